package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// exportT0 is the start time of the first record of the export fixture.
var exportT0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func TestParseExportLineRejects(t *testing.T) {
	good := `{"hash":"` + strings.Repeat("0", 64) + `","record":{"seq":0,"prev":"","kind":"genesis"}}`
	for _, line := range []string{
		"",
		"{",
		good, // wrong hash
		`{"hash":"x","record":[]}`,
		`{"hash":"x"}`,
	} {
		if _, _, err := ParseExportLine([]byte(line)); err == nil {
			t.Errorf("accepted %q", line)
		}
	}
}

func FuzzParseExportLine(f *testing.F) {
	f.Add([]byte(`{"hash":"00","record":{"seq":1,"prev":"","kind":"exchange"}}`))
	f.Add([]byte(`{"record":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, r, err := ParseExportLine(b)
		if err == nil && (l == nil || r == nil) {
			t.Fatal("nil result without error")
		}
	})
}

// exportFixture is a closed log with checkpoints every 4 records, its
// checkpoint file, and its complete export with bodies.
type exportFixture struct {
	path, cpFile, pubkey string
	export               []byte
	records              int
}

func newExportFixture(t testing.TB) *exportFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &exportFixture{path: filepath.Join(dir, "sessions.db"), cpFile: filepath.Join(dir, "checkpoints.txt")}
	st, err := Open(fx.path, Options{NoSync: true, CheckpointEvery: 4, CheckpointFile: fx.cpFile, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	fx.pubkey = st.PublicKey()
	for i := range 13 {
		r := &Record{Kind: KindExchange, SessionID: fmt.Sprintf("s-%d", i), Start: exportT0.Add(time.Duration(i) * time.Second),
			Identity: Identity{Method: "runner_token", Runner: "ci-1"}, Host: "api.openai.com", Outcome: OutcomeForwarded,
			Meta:        map[string]string{"note": "<b>&</b>"},
			RequestBody: []byte(fmt.Sprintf(`{"prompt":"question %d <script>"}`, i)), ResponseBody: []byte("answer\n\x00")}
		// One at a time, so that checkpoints land every 4 records.
		if _, err := st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if fx.records, err = Export(context.Background(), &buf, r, ExportOptions{Bodies: true}); err != nil {
		t.Fatal(err)
	}
	fx.export = buf.Bytes()
	return fx
}

func (fx *exportFixture) checkpoints(t testing.TB) [][]byte {
	t.Helper()
	data, err := os.ReadFile(fx.cpFile)
	if err != nil {
		t.Fatal(err)
	}
	return SplitNotes(data)
}

// exportLines splits an export into its lines (without newlines).
func exportLines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func joinLines(lines [][]byte) []byte {
	return append(bytes.Join(lines, []byte("\n")), '\n')
}

// rewriteLine re-encodes line i with its record changed by edit and, if
// rehash, a hash that matches; with rechain, every later line is rewritten
// to name its new predecessor, as someone who can rewrite the export (but
// not sign) would.
func rewriteLine(t *testing.T, lines [][]byte, i int, edit func(*Record), rehash, rechain bool) [][]byte {
	t.Helper()
	out := slices.Clone(lines)
	prev := ""
	for j := i; j < len(out); j++ {
		l, rec, err := ParseExportLine(out[j])
		if err != nil {
			t.Fatal(err)
		}
		if j == i {
			edit(rec)
		} else {
			rec.Prev = prev
		}
		leaf, err := EncodeLeaf(rec)
		if err != nil {
			t.Fatal(err)
		}
		h := tlog.RecordHash(leaf)
		if rehash {
			l.Hash = hex.EncodeToString(h[:])
		}
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := writeExportLine(w, l.Hash, leaf[len(LeafPrefix):], nil, nil, false); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		out[j] = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
		prev = l.Hash
		if !rechain {
			break
		}
	}
	return out
}

func TestVerifyExport(t *testing.T) {
	fx := newExportFixture(t)
	cps := fx.checkpoints(t)
	lines := exportLines(fx.export)
	// genesis + 13 + shutdown
	if fx.records != 15 || len(lines) != 15 || len(cps) < 4 {
		t.Fatalf("%d records, %d lines, %d checkpoints", fx.records, len(lines), len(cps))
	}
	changeHost := func(r *Record) { r.Host = "evil.example" }
	for _, tc := range []struct {
		name     string
		export   []byte
		cps      [][]byte
		pubkey   string
		problems []string // substrings, in order; nil: verifies
		err      string   // could not verify
	}{
		{name: "clean", export: fx.export, cps: cps},
		{name: "pinned", export: fx.export, cps: cps, pubkey: fx.pubkey},
		{name: "blank lines", export: append(append([]byte("\n"), fx.export...), "\n \n"...), cps: cps},
		{name: "prefix of the log", export: joinLines(lines[:9]), cps: cps},
		{name: "record edited", export: bytes.Replace(fx.export, []byte(`"session_id":"s-5"`), []byte(`"session_id":"s-6"`), 1), cps: cps,
			problems: []string{"record 6: modified"}},
		{name: "record edited, hash recomputed", export: joinLines(rewriteLine(t, lines, 6, changeHost, true, false)), cps: cps,
			problems: []string{"record 7: chain broken"}},
		{name: "chain rewritten", export: joinLines(rewriteLine(t, lines, 6, changeHost, true, true)), cps: cps,
			problems: []string{"record 8: checkpoint mismatch", "record 12: checkpoint mismatch", "record 14: checkpoint mismatch"}},
		{name: "line deleted", export: joinLines(slices.Delete(slices.Clone(lines), 3, 4)), cps: cps,
			problems: []string{"line 4: record 4 where record 3 belongs"}},
		{name: "lines swapped", export: joinLines(append(append(slices.Clone(lines[:3]), lines[4], lines[3]), lines[5:]...)), cps: cps,
			problems: []string{"line 4: record 4 where record 3 belongs", "line 5: record 3 where record 5 belongs"}},
		{name: "not JSON", export: joinLines(append(append(slices.Clone(lines[:2]), []byte("{oops")), lines[3:]...)), cps: cps,
			problems: []string{"line 3: export line"}},
		{name: "forged checkpoint", export: fx.export, cps: append(slices.Clone(cps), forgeSignature(t, cps[1])), problems: []string{"bad checkpoint signature"}},
		{name: "wrong key", export: fx.export, cps: cps, pubkey: otherKey(t), err: "not by the pinned key"},
		{name: "partial", export: joinLines(lines[2:]), cps: cps, err: "starts at record 2"},
		{name: "shorter than every checkpoint", export: joinLines(lines[:0+1]), cps: cps[1:], err: "fewer than the smallest checkpoint"},
		{name: "no checkpoint of this log", export: fx.export, cps: nil, err: "no checkpoint of the log"},
		{name: "empty", export: nil, cps: cps, err: "empty"},
		{name: "genesis unreadable", export: joinLines(append([][]byte{[]byte("{}")}, lines[1:]...)), cps: cps, err: "pin the key"},
		{name: "genesis unreadable, key pinned", export: joinLines(append([][]byte{[]byte("{}")}, lines[1:]...)), cps: cps, pubkey: fx.pubkey,
			problems: []string{"line 1: export line: no record"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := VerifyExport(bytes.NewReader(tc.export), tc.cps, tc.pubkey)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q (report %+v)", err, tc.err, rep)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %q", rep.Problems, tc.problems)
			}
			for i, p := range tc.problems {
				if !strings.Contains(rep.Problems[i], p) {
					t.Errorf("problem %d: %q, want %q", i, rep.Problems[i], p)
				}
			}
			if tc.problems != nil {
				return
			}
			if rep.KeyPinned != (tc.pubkey != "") || rep.PublicKey != fx.pubkey || rep.Checkpoints == 0 {
				t.Errorf("report %+v", rep)
			}
			if want := fmt.Sprintf("ok: %d records, checkpoint size %d, root %s", rep.Records, rep.Size, rep.Root); rep.Summary() != want || rep.Size > rep.Records || rep.Size < 4 {
				t.Errorf("summary %q", rep.Summary())
			}
		})
	}
}

// forgeSignature returns the checkpoint note with its body changed to
// claim another root, keeping the signature.
func forgeSignature(t *testing.T, msg []byte) []byte {
	t.Helper()
	text := string(msg)
	c, err := ParseCheckpoint(text[:strings.Index(text, "\n\n")+1])
	if err != nil {
		t.Fatal(err)
	}
	c.Root[0] ^= 1
	return []byte(c.String() + text[strings.Index(text, "\n\n")+1:])
}

func otherKey(t *testing.T) string {
	t.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, "other")
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

func TestCompactTree(t *testing.T) {
	var stored memHashes
	var ct compactRange
	for n := int64(0); n < 70; n++ {
		h := tlog.RecordHash([]byte(fmt.Sprint(n)))
		hs, err := tlog.StoredHashesForRecordHash(n, h, stored)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		ct.add(h)
		want, err := tlog.TreeHash(n+1, stored)
		if err != nil {
			t.Fatal(err)
		}
		if got := ct.root(); got != want {
			t.Fatalf("size %d: root %v, want %v", n+1, got, want)
		}
	}
}

func FuzzVerifyExport(f *testing.F) {
	fx := newExportFixture(f)
	cps := fx.checkpoints(f)
	lines := exportLines(fx.export)
	f.Add(fx.export)
	f.Add(joinLines(lines[:6]))
	f.Add(bytes.Replace(fx.export, []byte(`"seq":3`), []byte(`"seq":4`), 1))
	f.Add([]byte("\n\n{}\n"))
	g, _, err := ParseExportLine(lines[0])
	if err != nil {
		f.Fatal(err)
	}
	genesisHash := g.Hash
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := VerifyExport(bytes.NewReader(b), cps, fx.pubkey)
		if err == nil && rep == nil {
			t.Fatal("nil report without error")
		}
		if err != nil || !rep.OK() {
			return
		}
		// What verifies holds the log's records: its genesis first.
		first, _, _ := bytes.Cut(bytes.TrimLeft(b, " \t\r\n"), []byte("\n"))
		if l, rec, err := ParseExportLine(first); err != nil || rec.Seq != 0 || l.Hash != genesisHash {
			t.Fatalf("an export whose first line is not the log's genesis verifies: %+v", rep)
		}
	})
}
