package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sessctl/sessctl/store"
)

// memHashes is an in-memory tlog.HashReader for rebuilding a tree.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m[x]
	}
	return out, nil
}

// treeFromExport rebuilds the Merkle tree of the first n lines' hashes.
func treeFromExport(t *testing.T, lines []*store.ExportLine, n int64) tlog.Hash {
	t.Helper()
	var stored memHashes
	for i := int64(0); i < n; i++ {
		h := parseHexHash(t, lines[i].Hash)
		hs, err := tlog.StoredHashesForRecordHash(i, h, stored)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	root, err := tlog.TreeHash(n, stored)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func parseHexHash(t *testing.T, h string) tlog.Hash {
	t.Helper()
	var x tlog.Hash
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != len(x) {
		t.Fatalf("hash %q", h)
	}
	copy(x[:], b)
	return x
}

func parseExport(t *testing.T, data []byte) ([]*store.ExportLine, []*store.Record) {
	t.Helper()
	var lines []*store.ExportLine
	var recs []*store.Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l, r, err := store.ParseExportLine(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d: %v", len(lines)+1, err)
		}
		lines = append(lines, l)
		recs = append(recs, r)
	}
	return lines, recs
}

func TestExportVerifiesAgainstCheckpoint(t *testing.T) {
	l := newTestLog(t, 10*time.Millisecond)
	l.waitCheckpoint(t)
	var buf bytes.Buffer
	n, err := store.Export(context.Background(), &buf, l.st, store.ExportOptions{Bodies: true})
	if err != nil {
		t.Fatal(err)
	}
	lines, recs := parseExport(t, buf.Bytes())
	if n != len(lines) || n < 7 {
		t.Fatalf("wrote %d, parsed %d", n, len(lines))
	}
	for i, r := range recs {
		if r.Seq != uint64(i) {
			t.Fatalf("line %d has record %d", i, r.Seq)
		}
		if i > 0 && r.Prev != lines[i-1].Hash {
			t.Errorf("record %d prev %s, line before hashes to %s", i, r.Prev, lines[i-1].Hash)
		}
	}
	// The leaf bytes are exported as stored: "<" stays "<".
	stream := lines[l.seq["stream"]]
	if stream.Prompt == nil || *stream.Prompt != streamPrompt || stream.Answer == nil || !strings.HasPrefix(*stream.Answer, "data:") {
		t.Errorf("bodies of the stream record: %+v", stream)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"note":"<img src=x onerror=alert(2)>"`)) {
		t.Error("the leaf JSON was re-escaped")
	}
	// The hashes rebuild the tree the latest signed checkpoint names.
	msg, err := l.st.LatestCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	c, err := store.OpenCheckpoint(msg, l.st.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if c.Size > int64(len(lines)) {
		t.Fatalf("checkpoint of %d records, export of %d", c.Size, len(lines))
	}
	if root := treeFromExport(t, lines, c.Size); root != c.Root {
		t.Errorf("export root %v, checkpoint root %v", root, c.Root)
	}

	// From, limit, and no bodies.
	buf.Reset()
	if _, err := store.Export(context.Background(), &buf, l.st, store.ExportOptions{From: 2, Limit: 2}); err != nil {
		t.Fatal(err)
	}
	lines2, recs2 := parseExport(t, buf.Bytes())
	if len(recs2) != 2 || recs2[0].Seq != 2 || recs2[1].Seq != 3 || lines2[0].Hash != lines[2].Hash || lines2[0].Prompt != nil {
		t.Errorf("partial export: %d lines", len(recs2))
	}
	buf.Reset()
	if n, err := store.Export(context.Background(), &buf, l.st, store.ExportOptions{From: 1 << 40}); err != nil || n != 0 || buf.Len() != 0 {
		t.Errorf("export past the end: %d, %v", n, err)
	}
}

func TestExportDetectsAlteredRecord(t *testing.T) {
	l := newTestLog(t, time.Millisecond)
	target := l.seq["script"]
	if err := l.st.Close(); err != nil {
		t.Fatal(err)
	}
	// Someone with the disk edits a stored leaf in place.
	db, err := bbolt.Open(l.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("leaves"))
		key := make([]byte, 8)
		for i := 0; i < 8; i++ {
			key[7-i] = byte(target >> (8 * i))
		}
		v := bytes.Clone(b.Get(key))
		if !bytes.Contains(v, []byte("mallory")) {
			t.Fatalf("leaf %d: %s", target, v)
		}
		return b.Put(key, bytes.Replace(v, []byte("mallory"), []byte("octocat"), 1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := store.OpenReader(l.path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var buf bytes.Buffer
	n, err := store.Export(context.Background(), &buf, r, store.ExportOptions{})
	if err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("export of an altered log: %v", err)
	}
	if uint64(n) != target {
		t.Errorf("exported %d records before failing, want %d", n, target)
	}
	if _, recs := parseExport(t, buf.Bytes()); len(recs) != n {
		t.Errorf("%d lines written before the failure, want %d", len(recs), n)
	}
}

func TestExportAPIStreams(t *testing.T) {
	s := newTestServer(t)
	resp := s.do(t, "GET", "/api/v1/export?from=1&bodies=1", aliceToken, "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	body := readBody(t, resp)
	lines, recs := parseExport(t, []byte(body))
	if len(recs) < 6 || recs[0].Seq != 1 || lines[s.log.seq["stream"]-1].Prompt == nil {
		t.Errorf("export: %d records", len(recs))
	}
	for _, bad := range []string{"from=x", "limit=-2"} {
		if resp := s.do(t, "GET", "/api/v1/export?"+bad, aliceToken, ""); resp.StatusCode != 400 {
			t.Errorf("%s: %d", bad, resp.StatusCode)
		}
	}
}
