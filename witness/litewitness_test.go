package witness_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sessctl/sessctl/internal/witnesstest"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/witness"
)

// testLog is a store whose checkpoints (one every `every` records) are
// collected for the test to send.
type testLog struct {
	*store.Store
	path string
	cps  chan []byte
}

func openLog(t *testing.T, path string, every int) *testLog {
	t.Helper()
	l := &testLog{path: path, cps: make(chan []byte, 100)}
	st, err := store.Open(path, store.Options{
		SigningKeyFile:     filepath.Join(filepath.Dir(path), "log.key"),
		CheckpointEvery:    every,
		CheckpointInterval: time.Hour,
		OnCheckpoint:       func(b []byte) { l.cps <- b },
		Logger:             slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Store = st
	return l
}

// appendN appends n records tagged tag and returns the checkpoint that
// the last one triggers.
func (l *testLog) appendN(t *testing.T, n int, tag string) []byte {
	t.Helper()
	for i := range n {
		_, err := l.Append(context.Background(), &store.Record{Kind: store.KindExchange, Host: "api.openai.com", Path: fmt.Sprintf("/v1/%s/%d", tag, i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	select {
	case cp := <-l.cps:
		// Drain to the newest.
		for {
			select {
			case cp = <-l.cps:
			default:
				return cp
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no checkpoint")
		return nil
	}
}

func cpSize(t *testing.T, cp []byte) int64 {
	t.Helper()
	c, err := store.ParseCheckpoint(string(cp))
	if err != nil {
		t.Fatal(err)
	}
	return c.Size
}

// TestLitewitness runs the cosigner against a real witness (litewitness)
// on loopback: checkpoints get cosigned with consistency proofs, a wrong
// belief about the witness's size is corrected through 409, and a log
// rolled back and re-grown with another history under the same key is
// refused as inconsistent, which Health and the metrics report.
func TestLitewitness(t *testing.T) {
	w := witnesstest.Start(t, "witness.test/w1")
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "sessions.db"), 4)
	w.AddLog(t, l.Origin(), l.PublicKey())

	var logs bytes.Buffer
	c, err := witness.New(witness.Options{
		Witnesses: []witness.Witness{{Name: "w1", URL: w.URL, VKey: w.VKey}},
		Quorum:    1,
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The first checkpoint: old size 0, no proof.
	cp1 := l.appendN(t, 6, "a")
	if n, err := c.Cosign(ctx, l, cp1); n != 1 || err != nil {
		t.Fatalf("cosign first checkpoint: %d, %v", n, err)
	}
	size1 := cpSize(t, cp1)
	if got := w.Size(t, l.Origin()); got != size1 {
		t.Fatalf("witness holds %d, want %d", got, size1)
	}
	cosigned, err := l.CosignedCheckpoint(size1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(cosigned, cp1) || !strings.Contains(string(cosigned[len(cp1):]), "— witness.test/w1 ") {
		t.Fatalf("stored checkpoint lacks the cosignature:\n%s", cosigned)
	}
	if _, err := store.OpenCheckpoint(cosigned, l.PublicKey()); err != nil {
		t.Fatalf("cosigned checkpoint no longer opens with the log key: %v", err)
	}
	if res, err := witness.CheckQuorum(cosigned, []string{w.VKey}, 1); err != nil || len(res.Valid) != 1 {
		t.Fatalf("quorum on the cosigned checkpoint: %+v, %v", res, err)
	}
	if _, err := witness.CheckQuorum(cp1, []string{w.VKey}, 1); err == nil || !strings.Contains(err.Error(), "missing from witness.test/w1") {
		t.Fatalf("quorum on the bare checkpoint: %v", err)
	}

	// The next one with a consistency proof from size1.
	cp2 := l.appendN(t, 9, "b")
	if n, err := c.Cosign(ctx, l, cp2); n != 1 || err != nil {
		t.Fatalf("cosign second checkpoint: %d, %v", n, err)
	}
	size2 := cpSize(t, cp2)
	if got := w.Size(t, l.Origin()); got != size2 {
		t.Fatalf("witness holds %d, want %d", got, size2)
	}

	// A snapshot of the log as it is now, for the rollback below.
	snap := filepath.Join(dir, "old.db")
	f, err := os.Create(snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteSnapshot(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// A wrong belief (as after losing state): 409, then the right proof.
	if err := l.SetWitnessSize("w1", 0); err != nil {
		t.Fatal(err)
	}
	c2, err := witness.New(witness.Options{Witnesses: []witness.Witness{{Name: "w1", URL: w.URL, VKey: w.VKey}}, Quorum: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c2.Run(ctx2, l); close(done) }()
	cp3 := l.appendN(t, 4, "c")
	size3 := cpSize(t, cp3)
	c2.Submit(cp3)
	deadline := time.Now().Add(20 * time.Second)
	// The witness holds it a moment before the cosigner has stored its
	// answer: wait for both.
	for n, _ := l.WitnessSize("w1"); w.Size(t, l.Origin()) != size3 || n != size3; n, _ = l.WitnessSize("w1") {
		if time.Now().After(deadline) {
			t.Fatalf("witness never got checkpoint %d; log:\n%s", size3, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "holds="+fmt.Sprint(size2)) {
		t.Errorf("the 409 was not learned from; log:\n%s", logs.String())
	}
	if n, _ := l.WitnessSize("w1"); n != size3 {
		t.Errorf("stored witness size %d, want %d", n, size3)
	}
	if err := c.Health(); err != nil {
		t.Fatalf("healthy log reported: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Roll back: the attacker puts the older file back (same key) and
	// the log grows another history past the witness's size.
	if err := os.Rename(snap, l.path); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, l.path, 4)
	defer l.Close()
	// Its newest checkpoint is older than the witness's.
	old, size, err := l.LatestCosigned()
	if err != nil || size < size2 || size >= size3 {
		t.Fatalf("rolled-back log: latest checkpoint %d (want %d..%d), %v", size, size2, size3-1, err)
	}
	// Pure rollback: the witness holds more than this checkpoint.
	c3, err := witness.New(witness.Options{Witnesses: []witness.Witness{{Name: "w1", URL: w.URL, VKey: w.VKey}}, Quorum: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c3.Cosign(ctx, l, old); n != 0 || !errors.Is(err, witness.ErrInconsistent) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("rolled-back checkpoint %d: cosigned by %d, err %v", size, n, err)
	}
	if h := c3.Health(); h == nil {
		t.Fatal("health after a rollback: ok")
	}
	// Fork: the rolled-back log grows another history past the
	// witness's size; the consistency proof from the witness's size
	// cannot match the tree the witness saw.
	forks := 0
	c3, err = witness.New(witness.Options{Witnesses: []witness.Witness{{Name: "w1", URL: w.URL, VKey: w.VKey}}, Quorum: 1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), OnFork: func(string) { forks++ }})
	if err != nil {
		t.Fatal(err)
	}
	cpFork := l.appendN(t, 8, "forked")
	if cpSize(t, cpFork) <= size3 {
		t.Fatalf("forked log too short: %d", cpSize(t, cpFork))
	}
	logs.Reset()
	n, err := c3.Cosign(ctx, l, cpFork)
	if n != 0 || !errors.Is(err, witness.ErrInconsistent) {
		t.Fatalf("forked checkpoint: cosigned by %d, err %v", n, err)
	}
	if h := c3.Health(); h == nil || !strings.Contains(h.Error(), "w1") || !strings.Contains(h.Error(), "fork") {
		t.Fatalf("health after a fork: %v", h)
	}
	if !strings.Contains(logs.String(), "LOG FORK OR ROLLBACK") {
		t.Errorf("no loud log line:\n%s", logs.String())
	}
	if got := c3.Forks()["w1"]; got != 1 || forks != 1 {
		t.Errorf("forks counted %d, hook called %d times", got, forks)
	}
	if got := w.Size(t, l.Origin()); got != size3 {
		t.Fatalf("witness moved to %d after the fork", got)
	}
	forked, _ := l.CosignedCheckpoint(cpSize(t, cpFork))
	if _, err := witness.CheckQuorum(forked, []string{w.VKey}, 1); err == nil {
		t.Fatal("the forked checkpoint carries a cosignature")
	}
}

// TestLitewitnessRefusals: a witness that does not know the log, one with
// another key for it, a wrong URL and a witness that never answers are
// failures to retry, not forks.
func TestLitewitnessRefusals(t *testing.T) {
	w := witnesstest.Start(t, "witness.test/w2")
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "sessions.db"), 2)
	defer l.Close()
	cp := l.appendN(t, 3, "a")
	ctx := context.Background()

	// A listener that accepts and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, otherKey, err := note.GenerateKey(rand.Reader, l.Origin())
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		setup func()
		url   string
		want  []error // any of
		text  string
	}{
		{"unknown log", func() {}, w.URL, []error{witness.ErrForbidden, witness.ErrUnknownLog}, ""},
		{"another key", func() { w.AddLog(t, l.Origin(), otherKey) }, w.URL, []error{witness.ErrForbidden}, ""},
		{"wrong url", func() {}, w.URL + "/not-here", []error{witness.ErrUnknownLog}, ""},
		{"timeout", func() {}, "http://" + silent.Addr().String(), nil, "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			c, err := witness.New(witness.Options{
				Witnesses: []witness.Witness{{Name: "w2", URL: tc.url, VKey: w.VKey}},
				Quorum:    1, Timeout: 500 * time.Millisecond,
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			n, err := c.Cosign(ctx, l, cp)
			if n != 0 || err == nil {
				t.Fatalf("cosigned by %d, err %v", n, err)
			}
			matched := tc.text != "" && strings.Contains(err.Error(), tc.text)
			for _, e := range tc.want {
				matched = matched || errors.Is(err, e)
			}
			if !matched {
				t.Fatalf("err %v", err)
			}
			if errors.Is(err, witness.ErrInconsistent) || c.Health() != nil {
				t.Fatalf("reported as a fork: %v, health %v", err, c.Health())
			}
			var m bytes.Buffer
			c.WritePrometheus(&m)
			if !strings.Contains(m.String(), `sessctl_witness_failures_total{witness="w2"} 1`) {
				t.Fatalf("metrics:\n%s", m.String())
			}
		})
	}
}
