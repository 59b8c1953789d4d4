package tiles_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/tiles"
)

// newLog writes n records (with genesis, n+1) and a checkpoint of them.
func newLog(t *testing.T, n int) *store.Store {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "sessions.db"), store.Options{
		NoSync: true, CheckpointEvery: n, CheckpointInterval: time.Hour,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i := range n {
		r := &store.Record{Kind: store.KindExchange, Host: "api.openai.com", Path: fmt.Sprintf("/v1/chat/completions?i=%d", i),
			RequestBody: []byte(fmt.Sprintf(`{"n":%d}`, i)), Recording: store.RecordingFull}
		if _, err := st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, size, err := st.LatestCosigned(); err == nil && size == int64(n+1) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint of the whole log")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tamper flips a byte in the answers for one path.
type tamper struct {
	path string
	rt   http.RoundTripper
}

func (tp tamper) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := tp.rt.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/"+tp.path) {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(b) > 40 {
		b[40] ^= 1
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// fetchAll reads every entry of the log served at base with torchwood's
// tile client, checking tiles and entries against the signed checkpoint.
func fetchAll(t *testing.T, base, vkey string, rt http.RoundTripper) ([][]byte, tlog.Tree, error) {
	t.Helper()
	ctx := context.Background()
	f, err := torchwood.NewTileFetcher(base, torchwood.WithHTTPClient(&http.Client{Transport: rt, Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	cpb, err := f.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cpb, note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	cp, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil {
		t.Fatal(err)
	}
	c, err := torchwood.NewClient(f, torchwood.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var entries [][]byte
	for int64(len(entries)) < cp.N {
		before := len(entries)
		for i, e := range c.Entries(ctx, cp.Tree, int64(len(entries))) {
			if i != int64(len(entries)) {
				t.Fatalf("entry %d out of order", i)
			}
			entries = append(entries, bytes.Clone(e))
		}
		if err := c.Err(); err != nil {
			return entries, cp.Tree, err
		}
		if len(entries) == before {
			t.Fatalf("no progress at %d of %d", before, cp.N)
		}
	}
	return entries, cp.Tree, nil
}

// TestTorchwoodReadsTheLog checks the served log with an independent
// tlog-tiles client (filippo.io/torchwood): every entry is the record's
// leaf and hashes into the signed tree; a tampered hash tile or entry
// bundle is caught.
func TestTorchwoodReadsTheLog(t *testing.T) {
	st := newLog(t, 600) // 601 records: 2 full data tiles and a partial one, a partial level-1 tile
	mux := http.NewServeMux()
	mux.Handle("/log/", http.StripPrefix("/log", tiles.Handler(st, nil)))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	rt := &http.Transport{Proxy: nil}

	entries, tree, err := fetchAll(t, srv.URL+"/log/", st.PublicKey(), rt)
	if err != nil {
		t.Fatal(err)
	}
	if tree.N != 601 || len(entries) != 601 {
		t.Fatalf("tree %d, %d entries", tree.N, len(entries))
	}
	i := 0
	if err := st.Leaves(0, func(seq uint64, leaf, _, _ []byte) error {
		if seq < 601 && !bytes.Equal(leaf, entries[seq]) {
			t.Errorf("entry %d differs from the leaf", seq)
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rec, err := store.DecodeLeaf(entries[300])
	if err != nil || rec.Seq != 300 || rec.Request == nil || rec.Request.Hash == "" {
		t.Fatalf("entry 300 is not record 300 with its body commitment: %+v, %v", rec, err)
	}
	// One entry with its inclusion proof, as a monitor would check it.
	f, _ := torchwood.NewTileFetcher(srv.URL+"/log/", torchwood.WithHTTPClient(&http.Client{Transport: rt}))
	c, _ := torchwood.NewClient(f)
	e, proof, err := c.Entry(context.Background(), tree, 517)
	if err != nil || !bytes.Equal(e, entries[517]) {
		t.Fatalf("entry 517: %v", err)
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, 517, tlog.RecordHash(e)); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"tile/0/001", "tile/entries/000", "tile/1/000.p/2", "tile/entries/002.p/89"} {
		if _, _, err := fetchAll(t, srv.URL+"/log/", st.PublicKey(), tamper{path, rt}); err == nil {
			t.Errorf("tampered %s was not caught", path)
		}
	}
}

func TestHandlerPaths(t *testing.T) {
	st := newLog(t, 300) // 301 records
	h := http.StripPrefix("/log", tiles.Handler(st, nil))
	for _, tc := range []struct {
		path string
		code int
		size int
	}{
		{"/log/checkpoint", 200, -1},
		{"/log/tile/0/000", 200, 256 * 32},
		{"/log/tile/0/001.p/45", 200, 45 * 32},
		{"/log/tile/0/001", 404, 0},      // not full yet
		{"/log/tile/0/001.p/46", 404, 0}, // beyond the checkpoint
		{"/log/tile/1/000.p/1", 200, 32},
		{"/log/tile/1/000.p/2", 404, 0},
		{"/log/tile/entries/001.p/45", 200, -1},
		{"/log/tile/data/000", 404, 0},
		{"/log/tile/8/data/000", 404, 0},
		{"/log/tile/0/x000/000", 404, 0},
		{"/log/tile/0/-1", 404, 0},
		{"/log/tile/0/000.p/0", 404, 0},
		{"/log/tile/0/000.p/256", 404, 0},
		{"/log/tile/9/000", 404, 0},
		{"/log/../checkpoint", 404, 0},
		{"/log/nothing", 404, 0},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.code || (tc.size >= 0 && tc.code == 200 && rec.Body.Len() != tc.size) {
			t.Errorf("%s: %d, %d bytes; want %d, %d bytes", tc.path, rec.Code, rec.Body.Len(), tc.code, tc.size)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/log/checkpoint", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/entries/x001/234.p/7", "tile/3/x999/x999/999", "tile/data/000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tile, err := tiles.ParsePath(s)
		if err != nil {
			return
		}
		if got := tiles.Path(tile); got != s {
			t.Fatalf("ParsePath(%q) = %v, Path = %q", s, tile, got)
		}
	})
}

// TestOversizedLeaf: a leaf longer than an entry can be (65,535 bytes)
// makes its entry bundle unavailable, with the reason; the hash tiles,
// and so proofs, stay served.
func TestOversizedLeaf(t *testing.T) {
	st := newLog(t, 2)
	if _, err := st.Append(context.Background(), &store.Record{Kind: store.KindExchange, Meta: map[string]string{"big": strings.Repeat("x", 70_000)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(context.Background(), &store.Record{Kind: store.KindExchange}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, n, _ := st.LatestCosigned(); n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint of 5 records")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h := http.StripPrefix("/log", tiles.Handler(st, slog.New(slog.DiscardHandler)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/log/tile/entries/000.p/5", nil))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "too large for an entry bundle") {
		t.Fatalf("bundle with a 70 kB leaf: %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/log/tile/entries/000.p/3", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("bundle before the big leaf: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/log/tile/0/000.p/5", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 5*32 {
		t.Fatalf("hash tile: %d", rec.Code)
	}
}
