package proxy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessctl/sessctl/store"
)

// tokenMetrics is sessctl_tokens_total{type,model,outcome}: the tokens the
// upstreams reported, type one of input, cached_input, output, reasoning,
// total. Labels stay few: the model (at most maxModelLabels distinct
// names, then "other") and the outcome; never a run, repository or
// session.
type tokenMetrics struct {
	c      *prometheus.CounterVec
	mu     sync.Mutex
	models map[string]bool
}

// maxModelLabels bounds the distinct model label values.
const maxModelLabels = 64

// newTokenMetrics registers the token counter in reg.
func newTokenMetrics(reg prometheus.Registerer) *tokenMetrics {
	t := &tokenMetrics{models: map[string]bool{}, c: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessctl_tokens_total",
		Help: "Tokens the upstreams reported, by type (input, cached_input, output, reasoning, total), model (at most 64 names, then other) and outcome.",
	}, []string{"type", "model", "outcome"})}
	reg.MustRegister(t.c)
	return t
}

// addTokens counts the tokens of one answer.
func (m *Metrics) addTokens(model, outcome string, u *store.Usage) {
	t := m.tokens
	t.mu.Lock()
	if model == "" {
		model = "unknown"
	}
	if !t.models[model] {
		if len(t.models) >= maxModelLabels {
			model = "other"
		}
		t.models[model] = true
	}
	t.mu.Unlock()
	for _, c := range []struct {
		typ string
		n   int64
	}{{"input", u.Input}, {"cached_input", u.CachedInput}, {"output", u.Output}, {"reasoning", u.Reasoning}, {"total", u.Total}} {
		t.c.WithLabelValues(c.typ, model, outcome).Add(float64(c.n))
	}
}
