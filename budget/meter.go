package budget

import (
	"context"
	"sync"
	"time"

	"github.com/sessctl/sessctl/store"
)

// Counter keeps what each budget key spent in its current window. [Local]
// implements it in memory; a fleet-wide implementation shares it between
// replicas. Implementations must be safe for concurrent use.
type Counter interface {
	// Take counts one request against key in the window that starts at
	// start, unless the window's spend already reaches lim (tokens or
	// requests). It returns the spend before the request and whether the
	// request was counted. A later window replaces an earlier one.
	Take(ctx context.Context, key string, start time.Time, lim Limit) (store.Spent, bool, error)
	// Add adds tokens and requests (negative to give a request back) to
	// key's window that starts at start, if that window is still current.
	Add(ctx context.Context, key string, start time.Time, tokens, requests int64) error
}

// Local is a Counter in memory, for one sessctl. Seed it from the session
// log with [Local.Seed] (store.Store.Budgets) when it starts.
type Local struct {
	mu sync.Mutex
	w  map[string]*window
}

type window struct {
	start time.Time
	spent store.Spent
}

// NewLocal returns an empty in-memory counter.
func NewLocal() *Local { return &Local{w: make(map[string]*window)} }

// Seed sets key's window as read back from the log; a later window
// already known wins.
func (c *Local) Seed(key string, start time.Time, s store.Spent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.w[key]; w == nil || start.After(w.start) {
		c.w[key] = &window{start: start, spent: s}
	}
	return nil
}

// current returns key's window starting at start, resetting an older one.
// c.mu must be held.
func (c *Local) current(key string, start time.Time) *window {
	w := c.w[key]
	if w == nil || w.start.Before(start) {
		w = &window{start: start}
		c.w[key] = w
	}
	return w
}

// Take implements Counter.
func (c *Local) Take(_ context.Context, key string, start time.Time, lim Limit) (store.Spent, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.current(key, start)
	before := w.spent
	if !w.start.Equal(start) || over(before, lim) {
		return before, false, nil
	}
	w.spent.Requests++
	return before, true, nil
}

// Add implements Counter.
func (c *Local) Add(_ context.Context, key string, start time.Time, tokens, requests int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.w[key]; w != nil && w.start.Equal(start) {
		w.spent.Tokens += tokens
		w.spent.Requests += requests
	}
	return nil
}

// over reports whether s reaches one of lim's caps.
func over(s store.Spent, lim Limit) bool {
	return (lim.Tokens > 0 && s.Tokens >= lim.Tokens) || (lim.Requests > 0 && s.Requests >= lim.Requests)
}

// Meter admits requests against the limits of a policy.
type Meter struct {
	c   Counter
	now func() time.Time
}

// NewMeter returns a meter over c; now is the clock (time.Now if nil).
func NewMeter(c Counter, now func() time.Time) *Meter {
	if now == nil {
		now = time.Now
	}
	return &Meter{c: c, now: now}
}

// Now returns the meter's clock's time.
func (m *Meter) Now() time.Time { return m.now() }

// Exceeded says which limit refused a request and when its window frees.
type Exceeded struct {
	Limit Limit
	// Value is the attribute value counted (the repository...).
	Value string
	// Spent is the window's spend when the request was refused.
	Spent store.Spent
	// RetryAfter is the time left until the window ends.
	RetryAfter time.Duration
}

// Ticket is an admitted request: the windows it counts in.
type Ticket struct {
	m       *Meter
	entries []entry
}

type entry struct {
	key   string
	start time.Time
}

// Admit counts one request against each limit, for the attribute values
// attr returns. It returns a Ticket if every limit admits it, else which
// limit refused it (the request is then counted nowhere).
func (m *Meter) Admit(ctx context.Context, policy string, limits []Limit, attr func(name string) string) (*Ticket, *Exceeded, error) {
	now := m.now()
	t := &Ticket{m: m}
	for _, l := range merge(limits) {
		v := attr(l.Attr())
		key, start := Key(policy, l, v), Window(now, l.Per)
		spent, ok, err := m.c.Take(ctx, key, start, l)
		if err == nil && !ok {
			t.release(ctx)
			return nil, &Exceeded{Limit: l, Value: v, Spent: spent, RetryAfter: start.Add(l.Per).Sub(now)}, nil
		}
		if err != nil {
			t.release(ctx)
			return nil, nil, err
		}
		t.entries = append(t.entries, entry{key, start})
	}
	return t, nil, nil
}

// merge combines the limits that share a counter (same attribute and
// window) into one, each cap the smallest given.
func merge(limits []Limit) []Limit {
	out := make([]Limit, 0, len(limits))
next:
	for _, l := range limits {
		for i := range out {
			if o := &out[i]; o.Attr() == l.Attr() && o.Per == l.Per {
				o.Tokens = minCap(o.Tokens, l.Tokens)
				o.Requests = minCap(o.Requests, l.Requests)
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// minCap is the smaller of two caps, 0 meaning none.
func minCap(a, b int64) int64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// release gives back the requests counted so far.
func (t *Ticket) release(ctx context.Context) {
	for _, e := range t.entries {
		t.m.c.Add(ctx, e.key, e.start, 0, -1)
	}
	t.entries = nil
}

// Spend counts the tokens the answer reported and returns the charges to
// write with the exchange's record (one request and the tokens, per
// window), so that the counters survive a restart.
func (t *Ticket) Spend(ctx context.Context, tokens int64) []store.Charge {
	if t == nil {
		return nil
	}
	cs := make([]store.Charge, 0, len(t.entries))
	for _, e := range t.entries {
		if tokens != 0 {
			t.m.c.Add(ctx, e.key, e.start, tokens, 0)
		}
		cs = append(cs, store.Charge{Key: e.key, Window: e.start, Tokens: tokens, Requests: 1})
	}
	return cs
}
