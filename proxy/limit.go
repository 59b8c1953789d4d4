package proxy

import "sync"

// inflight bounds the exchanges one identity has in progress at once, so
// that one runner cannot hold all of sessctl's memory (each request body
// is held whole, up to max_body) or fill the approval queue.
type inflight struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newInflight(max int) *inflight {
	return &inflight{max: max, n: make(map[string]int)}
}

// acquire takes a slot for key; it reports false when key has max in
// progress. A successful acquire must be followed by release.
func (l *inflight) acquire(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= l.max {
		return false
	}
	l.n[key]++
	return true
}

func (l *inflight) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key]--; l.n[key] <= 0 {
		delete(l.n, key)
	}
}
