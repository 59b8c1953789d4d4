package budget

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sessctl/sessctl/store"
)

// TestCountersSurviveRestart spends a budget through records in a real
// log, reopens the log, and checks that a meter seeded from it still
// refuses until the window frees.
func TestCountersSurviveRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	opts := store.Options{SigningKeyFile: path + ".key", NoSync: true}
	clk := &clock{time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	limits := []Limit{{Tokens: 100, Per: 24 * time.Hour, By: "workflow"}}
	attr := func(string) string { return "nightly" }

	st, err := store.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMeter(NewLocal(), clk.now)
	for i := 0; i < 2; i++ {
		tk, ex, err := m.Admit(ctx, "p", limits, attr)
		if err != nil || ex != nil {
			t.Fatalf("request %d: %+v %v", i+1, ex, err)
		}
		rec := &store.Record{Kind: store.KindExchange, Usage: &store.Usage{Total: 60}}
		rec.Charges = tk.Spend(ctx, rec.Usage.Tokens())
		if _, err := st.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = store.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	local := NewLocal()
	if err := st.Budgets(local.Seed); err != nil {
		t.Fatal(err)
	}
	m = NewMeter(local, clk.now)
	_, ex, err := m.Admit(ctx, "p", limits, attr)
	if err != nil || ex == nil || ex.Spent != (store.Spent{Tokens: 120, Requests: 2}) || ex.RetryAfter != 14*time.Hour {
		t.Fatalf("after restart: %+v %v", ex, err)
	}
	clk.t = time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	if _, ex, _ := m.Admit(ctx, "p", limits, attr); ex != nil {
		t.Fatalf("the next day after restart: %+v", ex)
	}
}
