package proxy

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// Metrics are the proxy's counters, exposed in Prometheus text format.
type Metrics struct {
	mu sync.Mutex
	c  map[string]float64
	// models are the model label values in use (metrics_tokens.go).
	models map[string]bool
}

// NewMetrics returns an empty set of counters.
func NewMetrics() *Metrics { return &Metrics{c: make(map[string]float64)} }

func (m *Metrics) add(name string, v float64) {
	m.mu.Lock()
	m.c[name] += v
	m.mu.Unlock()
}

// Add increments counter name by v; used by other components (the store's
// health, the CA) that report through the same endpoint.
func (m *Metrics) Add(name string, v float64) { m.add(name, v) }

// WritePrometheus writes every counter as sessctl_<name>.
func (m *Metrics) WritePrometheus(w io.Writer) error {
	m.mu.Lock()
	names := make([]string, 0, len(m.c))
	for n := range m.c {
		names = append(names, n)
	}
	sort.Strings(names)
	vals := make([]float64, len(names))
	for i, n := range names {
		vals[i] = m.c[n]
	}
	m.mu.Unlock()
	family := ""
	for i, n := range names {
		// A labelled counter's name is family{labels}: one TYPE line
		// per family.
		if f, _, _ := strings.Cut(n, "{"); f != family {
			family = f
			if _, err := fmt.Fprintf(w, "# TYPE sessctl_%s counter\n", f); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(w, "sessctl_%s %g\n", n, vals[i]); err != nil {
			return err
		}
	}
	return nil
}
