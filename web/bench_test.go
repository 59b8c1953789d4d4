package web

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

// benchLog appends n exchanges spread over 100 repositories.
func benchLog(b *testing.B, n int) *store.Store {
	b.Helper()
	st, err := store.Open(filepath.Join(b.TempDir(), "bench.db"), store.Options{NoSync: true, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	const workers = 64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				r := &store.Record{Kind: store.KindExchange, SessionID: fmt.Sprintf("s-%d", i), Start: start.Add(time.Duration(i) * time.Second),
					Identity: store.Identity{Method: "oidc", Claims: map[string]string{"repository": fmt.Sprintf("acme/r%d", i%100), "run_id": fmt.Sprint(i / 10)}},
					Host:     "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Status: 200, Outcome: store.OutcomeForwarded}
				if _, err := st.Append(context.Background(), r); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	return st
}

// BenchmarkFind measures filtered listings over a 20,000-record log: a
// filter on a claim reads the records the store's index lists for it, a
// time-bounded one only its window. store's BenchmarkListFiltered1M does
// the same over a million records.
func BenchmarkFind(b *testing.B) {
	st := benchLog(b, 20000)
	for _, bc := range []struct {
		name string
		q    query.Query
	}{
		{"newest-100", query.Query{Limit: 100}},
		{"repo-1pct-limit-50", query.Query{Repo: "acme/r7", Limit: 50}},
		{"run-one-match", query.Query{Run: "42"}},
		{"time-window-1h", query.Query{Since: time.Date(2025, 1, 1, 2, 0, 0, 0, time.UTC), Until: time.Date(2025, 1, 1, 3, 0, 0, 0, time.UTC)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				n := 0
				if _, err := query.Find(st, bc.q, func(*store.Record) error { n++; return nil }); err != nil {
					b.Fatal(err)
				}
				if n == 0 {
					b.Fatal("no match")
				}
			}
		})
	}
}

// BenchmarkExport measures the JSONL export per record.
func BenchmarkExport(b *testing.B) {
	st := benchLog(b, 2000)
	for b.Loop() {
		if _, err := store.Export(context.Background(), discard{}, st, store.ExportOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
