package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestBudgetChargesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	opts := Options{SigningKeyFile: path + ".key", NoSync: true}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		r := &Record{Kind: KindExchange, Outcome: OutcomeForwarded, Usage: &Usage{Input: 5, Output: 5, Total: 10},
			Charges: []Charge{{Key: "p/repository=acme/api/86400s", Window: day, Tokens: 10, Requests: 1}}}
		if _, err := s.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// A new window replaces the counter's old one.
	if _, err := s.Append(ctx, &Record{Kind: KindExchange, Charges: []Charge{
		{Key: "p/runner=r/60s", Window: day, Requests: 1},
		{Key: "p/runner=r/60s", Window: day.Add(time.Minute), Tokens: 7, Requests: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, &Record{Kind: KindExchange, Charges: []Charge{{Key: "bad\x00key", Window: day}}}); err == nil {
		t.Fatal("a key with a NUL byte was accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string]Spent{}
	wins := map[string]time.Time{}
	if err := s.Budgets(func(k string, w time.Time, sp Spent) error {
		got[k], wins[k] = sp, w
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["p/repository=acme/api/86400s"] != (Spent{30, 3}) || !wins["p/repository=acme/api/86400s"].Equal(day) {
		t.Fatalf("after restart: %+v %+v", got, wins)
	}
	if got["p/runner=r/60s"] != (Spent{7, 1}) || !wins["p/runner=r/60s"].Equal(day.Add(time.Minute)) {
		t.Fatalf("the old window was kept: %+v %+v", got, wins)
	}
	// The usage is in the leaf.
	var n int
	s.List(Filter{}, func(r *Record) error {
		if r.Usage != nil && r.Usage.Total == 10 {
			n++
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("%d records with usage, want 3", n)
	}
}
