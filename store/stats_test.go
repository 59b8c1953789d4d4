package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestStatsAndCommitHook(t *testing.T) {
	var (
		mu      sync.Mutex
		writes  int
		commits int
	)
	s, _ := openTest(t, Options{
		NoSync:             true,
		CheckpointEvery:    1 << 20,
		CheckpointInterval: time.Hour,
		OnCommit: func(n int, took time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil || n <= 0 || took < 0 {
				t.Errorf("OnCommit(%d, %v, %v)", n, took, err)
			}
			writes += n
			commits++
		},
	})
	defer s.Close()
	before := s.Stats()
	if before.Records == 0 || before.Bytes <= 0 || before.CheckpointTime.IsZero() {
		t.Fatalf("stats of a fresh log = %+v, want the genesis record, a file size and a time", before)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Append(context.Background(), exchange(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Records != before.Records+n {
		t.Errorf("Records = %d, want %d", st.Records, before.Records+n)
	}
	if st.CheckpointSize > before.Records || st.Records-st.CheckpointSize < n {
		t.Errorf("no checkpoint was due, yet CheckpointSize = %d of %d records", st.CheckpointSize, st.Records)
	}
	mu.Lock()
	if writes != n || commits < 1 || commits > n {
		t.Errorf("OnCommit saw %d writes in %d commits, want %d writes in 1..%d commits", writes, commits, n, n)
	}
	mu.Unlock()
	if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	// Close signs a final checkpoint covering every record.
	if st := s.Stats(); st.CheckpointSize != st.Records || st.CheckpointTime.Before(before.CheckpointTime) {
		t.Errorf("after Close: %+v, want a checkpoint of every record", st)
	}
}

// progressLog collects progress reports.
type progressLog struct {
	mu    sync.Mutex
	calls map[string][][2]uint64
}

func (p *progressLog) add(task string, done, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls == nil {
		p.calls = map[string][][2]uint64{}
	}
	p.calls[task] = append(p.calls[task], [2]uint64{done, total})
}

func (p *progressLog) get(task string) [][2]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][2]uint64(nil), p.calls[task]...)
}

// checkProgress wants reports that rise to near total, all of total.
func checkProgress(t *testing.T, task string, got [][2]uint64, total uint64) {
	t.Helper()
	if len(got) < 2 {
		t.Fatalf("%s: %d progress reports, want several: %v", task, len(got), got)
	}
	for i, c := range got {
		if c[1] != total || c[0] > total || (i > 0 && c[0] <= got[i-1][0]) {
			t.Fatalf("%s: reports %v, want rising counts of %d", task, got, total)
		}
	}
	if last := got[len(got)-1][0]; total-last > progressEvery {
		t.Errorf("%s: last report %d of %d", task, last, total)
	}
}

func TestProgressReports(t *testing.T) {
	const n = 9000
	var p progressLog
	s, path := openTest(t, Options{NoSync: true, Progress: p.add})
	recs := make([]*Record, 0, 500)
	for i := range n {
		recs = append(recs, exchange(i))
		if len(recs) == cap(recs) || i == n-1 {
			if err := appendBulk(s, recs); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	size := s.Stats().Records

	// Prune reports the records it walks.
	if _, err := s.Prune(context.Background(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	checkProgress(t, "pruning", p.get("pruning"), size)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Verify reports the records hashed.
	rep, err := Verify(path, VerifyOptions{Progress: func(done, total uint64) { p.add("verify", done, total) }})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	checkProgress(t, "verify", p.get("verify"), uint64(rep.Records))

	// Open reports the index build of a log whose index is gone.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketIndex) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s2, err := Open(path, Options{NoSync: true, Logger: quietLogger(), SigningKeyFile: filepath.Join(filepath.Dir(path), "signing.key"),
		Progress: p.add})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	idx := p.get("indexing")
	if len(idx) == 0 || idx[len(idx)-1][0] != idx[len(idx)-1][1] || idx[len(idx)-1][1] < size {
		t.Errorf("indexing reports %v, want one ending at the log's %d+ records", idx, size)
	}
}
