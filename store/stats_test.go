package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
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
