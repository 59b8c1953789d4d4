package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openTestStore(t *testing.T, every int) *Store {
	t.Helper()
	st, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{NoSync: true, CheckpointEvery: every, CheckpointInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func waitCheckpoint(t *testing.T, st *Store, size int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, n, err := st.LatestCosigned(); err == nil && n >= size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d records", size)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAddCosignatures(t *testing.T) {
	st := openTestStore(t, 3)
	for range 3 {
		if _, err := st.Append(context.Background(), &Record{Kind: KindExchange}); err != nil {
			t.Fatal(err)
		}
	}
	waitCheckpoint(t, st, 4)
	plain, err := st.CosignedCheckpoint(4)
	if err != nil {
		t.Fatal(err)
	}
	// Syntactically valid lines from two witnesses (the store does not
	// check cosignatures: the witness package does).
	a1 := "— w.test/a AAAAAQ" + strings.Repeat("A", 88) + "==\n"
	a2 := "— w.test/a AAAAAQ" + strings.Repeat("B", 88) + "==\n"
	b1 := "— w.test/b AAAAAg" + strings.Repeat("C", 88) + "==\n"
	for _, tc := range []struct {
		add  string
		want string // signature lines after the log's
		err  string
	}{
		{a1, a1, ""},
		{b1, a1 + b1, ""},
		{a2, a2 + b1, ""}, // same key: replaced
		{"", "", "no signature line"},
		{"— w.test/a AAAA\n", "", "malformed signature"},
		{"not a line\n", "", "not a note signature line"},
		{"— w.test/a AAAAAQ==", "", "without a newline"},
	} {
		err := st.AddCosignatures(4, []byte(tc.add))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("AddCosignatures(%q): %v, want %q", tc.add, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, _ := st.CosignedCheckpoint(4)
		if string(got) != string(plain)+tc.want {
			t.Fatalf("after %q:\n%s", tc.add, got)
		}
		if _, err := OpenCheckpoint(got, st.PublicKey()); err != nil {
			t.Fatalf("cosigned checkpoint does not open with the log key: %v", err)
		}
	}
	if err := st.AddCosignatures(99, []byte(a1)); err == nil {
		t.Fatal("cosignature stored on a checkpoint that does not exist")
	}
	if _, err := st.CosignedCheckpoint(99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("checkpoint 99: %v", err)
	}
	// The log's own signature line is never replaced.
	own := plain[bytes.LastIndex(plain, []byte("\n\n"))+2:]
	forged := bytes.Replace(own, []byte(" "), []byte(" "), 1)
	forged = append(forged[:len(forged)-10], []byte("AAAAAAAAA\n")...)
	if err := st.AddCosignatures(4, forged); err != nil {
		t.Fatal(err)
	}
	got, _ := st.CosignedCheckpoint(4)
	if !bytes.HasPrefix(got, plain) {
		t.Fatalf("the log's signature was replaced:\n%s", got)
	}
	// Witness sizes.
	if n, err := st.WitnessSize("w.test/a"); n != 0 || err != nil {
		t.Fatalf("unknown witness: %d %v", n, err)
	}
	if err := st.SetWitnessSize("w.test/a", 4); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.WitnessSize("w.test/a"); n != 4 {
		t.Fatalf("witness size %d", n)
	}
}

func TestTLogProof(t *testing.T) {
	st := openTestStore(t, 5)
	for range 9 {
		if _, err := st.Append(context.Background(), &Record{Kind: KindExchange, Host: "api.openai.com"}); err != nil {
			t.Fatal(err)
		}
	}
	waitCheckpoint(t, st, 6)
	proof, err := st.ProveTLog(3)
	if err != nil {
		t.Fatal(err)
	}
	res, cp, err := VerifyTLogProof(proof, st.PublicKey())
	if err != nil || res.Seq != 3 || res.Record.Seq != 3 || !bytes.HasSuffix(proof, cp) {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	if _, err := st.ProveTLog(1000); err == nil {
		t.Fatal("proof of a record beyond the checkpoint")
	}
	lines := strings.Split(string(proof), "\n")
	mutate := func(f func([]string) []string) []byte {
		l := f(append([]string(nil), lines...))
		return []byte(strings.Join(l, "\n"))
	}
	for name, bad := range map[string][]byte{
		"other index": mutate(func(l []string) []string { l[2] = "index 4"; return l }),
		"no extra":    mutate(func(l []string) []string { return append(l[:1], l[2:]...) }),
		"bad hash":    mutate(func(l []string) []string { l[3] = "AAAA" + l[3][4:]; return l }),
		"leading 0":   mutate(func(l []string) []string { l[2] = "index 03"; return l }),
		"header":      bytes.Replace(proof, []byte("@v1"), []byte("@v2"), 1),
		"no blank":    bytes.Replace(proof, []byte("\n\n"), []byte("\n"), 1),
	} {
		if _, _, err := VerifyTLogProof(bad, st.PublicKey()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, err := VerifyTLogProof(proof, ""); err == nil {
		t.Error("accepted without a key")
	}
}

func FuzzVerifyTLogProof(f *testing.F) {
	f.Add([]byte("c2sp.org/tlog-proof@v1\nextra AA==\nindex 0\n\nx\n1\nAAAA\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		VerifyTLogProof(b, "x+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	})
}

func FuzzParseSigLines(f *testing.F) {
	f.Add([]byte("— w.test/a AAAAAQ==\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := parseSigLines(b)
		if err != nil {
			return
		}
		var joined []byte
		for _, l := range ls {
			joined = append(joined, l.line...)
		}
		if !bytes.Equal(joined, b) {
			t.Fatalf("lines do not rejoin to the input")
		}
	})
}
