package budget

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sessctl/sessctl/store"
)

func TestParseLimits(t *testing.T) {
	tests := []struct {
		in   string
		want Limits
		bad  bool
	}{
		{"{tokens: 2M, per: 24h}", Limits{{Tokens: 2_000_000, Per: 24 * time.Hour}}, false},
		{"{requests: 600, per: 1m, by: workflow}", Limits{{Requests: 600, Per: time.Minute, By: "workflow"}}, false},
		{"[{tokens: 50K, per: 7d}, {requests: 10, per: 1s, by: runner}]", Limits{{Tokens: 50_000, Per: 7 * 24 * time.Hour}, {Requests: 10, Per: time.Second, By: "runner"}}, false},
		{"{per: 24h}", nil, true},
		{"{tokens: 2M}", nil, true},
		{"{tokens: -5, per: 1h}", nil, true},
		{"{tokens: 2X, per: 1h}", nil, true},
		{"{tokens: 2M, per: 500ms}", nil, true},
		{"{tokens: 2M, per: soon}", nil, true},
		{"{tokens: 2M, per: 1h, extra: 1}", nil, true},
	}
	for _, tt := range tests {
		var got Limits
		dec := yaml.NewDecoder(stringsReader(tt.in))
		dec.KnownFields(true)
		err := dec.Decode(&got)
		if (err != nil) != tt.bad {
			t.Errorf("%s: err = %v, bad = %v", tt.in, err, tt.bad)
			continue
		}
		if !tt.bad && len(got) != len(tt.want) {
			t.Errorf("%s: got %+v", tt.in, got)
			continue
		}
		for i := range tt.want {
			if got[i] != tt.want[i] {
				t.Errorf("%s: got %+v, want %+v", tt.in, got[i], tt.want[i])
			}
		}
	}
}

func TestWindow(t *testing.T) {
	at := time.Date(2026, 12, 4, 15, 36, 38, 5, time.UTC)
	for per, want := range map[time.Duration]time.Time{
		time.Minute:    time.Date(2026, 12, 4, 15, 36, 0, 0, time.UTC),
		24 * time.Hour: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC),
		time.Hour:      time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC),
	} {
		if got := Window(at, per); !got.Equal(want) {
			t.Errorf("Window(%s) = %s, want %s", per, got, want)
		}
	}
}

// clock is a clock the test moves.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestMeterTripsAndFrees(t *testing.T) {
	ctx := context.Background()
	clk := &clock{time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	m := NewMeter(NewLocal(), clk.now)
	limits := []Limit{{Tokens: 1000, Per: 24 * time.Hour}, {Requests: 3, Per: time.Minute, By: "runner"}}
	attr := func(name string) string { return map[string]string{"repository": "acme/api", "runner": "r1"}[name] }
	// Three requests in one minute: the fourth is over the request cap,
	// and frees when the minute ends.
	for i := 0; i < 3; i++ {
		tk, ex, err := m.Admit(ctx, "p", limits, attr)
		if err != nil || ex != nil {
			t.Fatalf("request %d refused: %+v %v", i+1, ex, err)
		}
		tk.Spend(ctx, 300)
	}
	clk.t = clk.t.Add(20 * time.Second)
	_, ex, _ := m.Admit(ctx, "p", limits, attr)
	if ex == nil || ex.Limit.Requests != 3 || ex.RetryAfter != 40*time.Second {
		t.Fatalf("4th request in the minute: %+v", ex)
	}
	clk.t = clk.t.Add(40 * time.Second)
	// 900 tokens spent: still under 1000, admitted; its 300 tokens take
	// the day over, so the next is refused until midnight UTC.
	tk, ex, _ := m.Admit(ctx, "p", limits, attr)
	if ex != nil {
		t.Fatalf("request after the minute freed: %+v", ex)
	}
	if cs := tk.Spend(ctx, 300); len(cs) != 2 || cs[0].Tokens != 300 || cs[0].Requests != 1 {
		t.Fatalf("charges %+v", cs)
	}
	_, ex, _ = m.Admit(ctx, "p", limits, attr)
	if ex == nil || ex.Limit.Tokens != 1000 || ex.Spent.Tokens != 1200 || ex.RetryAfter != 14*time.Hour-time.Minute {
		t.Fatalf("over the token budget: %+v", ex)
	}
	// The refused request counted nowhere: the minute has 1 request.
	clk.t = time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	if _, ex, _ := m.Admit(ctx, "p", limits, attr); ex != nil {
		t.Fatalf("a new day: %+v", ex)
	}
	// Another repository has its own budget.
	other := func(name string) string { return map[string]string{"repository": "acme/web", "runner": "r2"}[name] }
	if _, ex, _ := m.Admit(ctx, "p", limits, other); ex != nil {
		t.Fatalf("another repository: %+v", ex)
	}
}

func TestMergeSharedCounter(t *testing.T) {
	ctx := context.Background()
	c := NewLocal()
	m := NewMeter(c, func() time.Time { return time.Unix(1000, 0) })
	limits := []Limit{{Tokens: 10, Per: time.Hour}, {Requests: 2, Per: time.Hour}}
	attr := func(string) string { return "x" }
	for i := 0; i < 2; i++ {
		if _, ex, _ := m.Admit(ctx, "p", limits, attr); ex != nil {
			t.Fatalf("request %d refused", i+1)
		}
	}
	if _, ex, _ := m.Admit(ctx, "p", limits, attr); ex == nil {
		t.Fatal("two limits on one counter counted each request twice or not at all")
	}
}

func TestLocalSeed(t *testing.T) {
	ctx := context.Background()
	c := NewLocal()
	start := time.Unix(3600, 0).UTC()
	c.Seed("k", start, store.Spent{Tokens: 10, Requests: 1})
	if _, ok, _ := c.Take(ctx, "k", start, Limit{Tokens: 10, Per: time.Hour}); ok {
		t.Fatal("seeded spend ignored")
	}
	if _, ok, _ := c.Take(ctx, "k", start.Add(time.Hour), Limit{Tokens: 10, Per: time.Hour}); !ok {
		t.Fatal("a new window kept the old spend")
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func FuzzParseCount(f *testing.F) {
	for _, s := range []string{"2M", "600", "50k", "1G", "", "-1", "9223372036854775807", "4611686018427387904G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCount(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseCount(%q) = %d", s, n)
		}
	})
}
