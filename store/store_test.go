package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openTest opens a fresh log in a temporary directory.
func openTest(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "sessions.db")
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.SigningKeyFile == "" {
		opts.SigningKeyFile = filepath.Join(dir, "signing.key")
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func exchange(i int) *Record {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return &Record{
		Kind:         KindExchange,
		SessionID:    fmt.Sprintf("0190c3a0-0000-7000-8000-%012d", i),
		Start:        start,
		End:          start.Add(500 * time.Millisecond),
		Identity:     Identity{Method: "runner_token", Runner: fmt.Sprintf("runner-%d", i%3)},
		Host:         "api.openai.com",
		Method:       "POST",
		Path:         "/v1/chat/completions",
		Model:        "gpt-4o-mini",
		Status:       200,
		Outcome:      OutcomeForwarded,
		Recording:    RecordingFull,
		RequestBody:  []byte(fmt.Sprintf(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"question %d"}]}`, i)),
		ResponseBody: []byte(fmt.Sprintf(`{"choices":[{"message":{"content":"answer %d"}}]}`, i)),
	}
}

func mustVerify(t *testing.T, path string, opts VerifyOptions) *Report {
	t.Helper()
	rep, err := Verify(path, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func TestAppendGetListVerify(t *testing.T) {
	s, path := openTest(t, Options{CheckpointEvery: 4})
	ctx := context.Background()
	var receipts []Receipt
	for i := range 10 {
		r := exchange(i)
		if i == 7 {
			r.Recording = RecordingMetadata
		}
		rc, err := s.Append(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if rc.Seq != uint64(i+1) || r.Seq != rc.Seq || len(rc.Hash) != 64 {
			t.Fatalf("receipt %+v, record seq %d", rc, r.Seq)
		}
		if i == 7 && (r.Request != nil || r.Response != nil) {
			t.Fatalf("metadata recording got commitments")
		}
		if i != 7 && (r.Request == nil || r.Request.Size != int64(len(r.RequestBody))) {
			t.Fatalf("missing request commitment: %+v", r.Request)
		}
		receipts = append(receipts, rc)
	}
	if err := s.Healthy(); err != nil {
		t.Fatal(err)
	}
	if len(s.SecretKey()) != 32 {
		t.Fatalf("secret key of %d bytes", len(s.SecretKey()))
	}

	// Get by seq and by session id.
	for _, id := range []string{"3", exchange(2).SessionID} {
		rec, req, resp, err := s.Get(id)
		if err != nil {
			t.Fatalf("Get(%q): %v", id, err)
		}
		if rec.Seq != 3 || string(req) != string(exchange(2).RequestBody) || string(resp) != string(exchange(2).ResponseBody) {
			t.Fatalf("Get(%q) = seq %d, %q, %q", id, rec.Seq, req, resp)
		}
		if rec.Identity.Runner != "runner-2" || rec.Prev == "" {
			t.Fatalf("Get(%q) = %+v", id, rec)
		}
	}
	if _, _, _, err := s.Get("no-such-session"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if _, _, _, err := s.Get("999"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(999) = %v, want ErrNotFound", err)
	}

	tests := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"runner", Filter{Runner: "runner-1", Kind: KindExchange}, []uint64{8, 5, 2}},
		{"limit", Filter{Kind: KindExchange, Limit: 2}, []uint64{10, 9}},
		{"since-until", Filter{Since: exchange(3).Start, Until: exchange(6).Start}, []uint64{6, 5, 4}},
		{"outcome", Filter{Outcome: OutcomeBlocked}, nil},
		{"host", Filter{Host: "api.openai.com", Since: exchange(8).Start}, []uint64{10, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			if err := s.List(tt.f, func(r *Record) error { got = append(got, r.Seq); return nil }); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("List = %v, want %v", got, tt.want)
			}
		})
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, exchange(99)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	if err := s.Healthy(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Healthy after Close = %v, want ErrClosed", err)
	}
	rep := mustVerify(t, path, VerifyOptions{})
	if !rep.OK() {
		t.Fatalf("clean log has problems: %v", rep.Problems)
	}
	// genesis + 10 + shutdown
	if rep.Records != 12 || rep.Checkpoints < 3 || rep.Bodies != 18 {
		t.Fatalf("report %+v", rep)
	}
	if !strings.HasPrefix(rep.Summary(), "ok: 12 records, ") {
		t.Fatalf("summary %q", rep.Summary())
	}
	if rep.Head == receipts[len(receipts)-1].Hash {
		t.Fatalf("head should be the shutdown record")
	}

	// Reopen: the chain continues.
	s2, err := Open(path, Options{SigningKeyFile: filepath.Join(filepath.Dir(path), "signing.key"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s2.Append(ctx, exchange(10))
	if err != nil || rc.Seq != 12 {
		t.Fatalf("append after reopen: %v %+v", err, rc)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path, VerifyOptions{}); !rep.OK() || rep.Records != 14 {
		t.Fatalf("after reopen: %+v", rep)
	}
}

func TestConcurrentAppend(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true, CheckpointEvery: 50})
	var wg sync.WaitGroup
	seqs := make(chan uint64, 400)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				rc, err := s.Append(context.Background(), exchange(g*100+i))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- rc.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for q := range seqs {
		if seen[q] {
			t.Fatalf("seq %d acknowledged twice", q)
		}
		seen[q] = true
	}
	if len(seen) != 400 {
		t.Fatalf("%d receipts", len(seen))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path, VerifyOptions{}); !rep.OK() || rep.Records != 402 {
		t.Fatalf("report %+v", rep)
	}
}

func TestLeafSpliceMatchesEncode(t *testing.T) {
	for i, r := range []*Record{exchange(1), {Kind: KindShutdown}, {Kind: KindRefused, Reason: `<"quoted">`, Extra: map[string]string{"b": "2", "a": "1"}}} {
		j, err := newJob(r)
		if err != nil {
			t.Fatal(err)
		}
		prev := strings.Repeat("ab", 32)
		got := leafFrom(j.pre, 42, prev)
		rec := *j.rec
		rec.Seq, rec.Prev = 42, prev
		want, err := EncodeLeaf(&rec)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("%d: splice\n%s\nencode\n%s", i, got, want)
		}
		back, err := DecodeLeaf(got)
		if err != nil || back.Seq != 42 || back.Prev != prev {
			t.Fatalf("%d: decode: %v %+v", i, err, back)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	random := filepath.Join(dir, "random.db")
	if err := os.WriteFile(random, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReader(random); err == nil || !strings.Contains(err.Error(), "not a bbolt database") {
		t.Fatalf("random file: %v", err)
	}
	if _, err := Open(random, Options{Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "not a bbolt database") {
		t.Fatalf("random file: %v", err)
	}
	short := filepath.Join(dir, "short.db")
	if err := os.WriteFile(short, []byte("tiny"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReader(short); err == nil || !strings.Contains(err.Error(), "not a bbolt database") {
		t.Fatalf("short file: %v", err)
	}
	if _, err := OpenReader(filepath.Join(dir, "missing.db")); err == nil {
		t.Fatal("missing file opened")
	}
	foreign := filepath.Join(dir, "foreign.db")
	writeForeignDB(t, foreign)
	if _, err := OpenReader(foreign); err == nil || !strings.Contains(err.Error(), "not a sessctl log") {
		t.Fatalf("foreign file: %v", err)
	}
	if _, err := Open(foreign, Options{Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "not a sessctl log") {
		t.Fatalf("foreign file: %v", err)
	}

	// A running store holds the lock.
	s, path := openTest(t, Options{NoSync: true})
	defer s.Close()
	if _, err := OpenReader(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("locked file: %v", err)
	}
}

func TestSigningKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	s, err := Open(filepath.Join(dir, "a.db"), Options{SigningKeyFile: key, Logger: quietLogger(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil || strings.TrimSpace(string(pub)) != s.PublicKey() {
		t.Fatalf("public key file %q vs %q: %v", pub, s.PublicKey(), err)
	}
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "a.db"), Options{SigningKeyFile: key, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Fatalf("group-readable key: %v", err)
	}
	os.Chmod(key, 0o600)
	// Another log's key is refused.
	other := filepath.Join(dir, "other")
	s2, err := Open(filepath.Join(dir, "b.db"), Options{SigningKeyFile: other, Logger: quietLogger(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	_, err = Open(filepath.Join(dir, "a.db"), Options{SigningKeyFile: other, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "not this log's key") {
		t.Fatalf("foreign key: %v", err)
	}
	if strings.Contains(err.Error(), "PRIVATE") {
		t.Fatalf("error leaks the key: %v", err)
	}
}
