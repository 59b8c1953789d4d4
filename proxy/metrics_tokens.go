package proxy

import (
	"strconv"
	"strings"

	"github.com/sessctl/sessctl/store"
)

// Token counters: sessctl_tokens_total{type,model,outcome}, type one of
// input, cached_input, output, reasoning, total. Labels stay few: the
// model (at most maxModelLabels distinct names, then "other") and the
// outcome; never a run, repository or session.

// maxModelLabels bounds the distinct model label values.
const maxModelLabels = 64

// addTokens counts the tokens of one answer.
func (m *Metrics) addTokens(model, outcome string, u *store.Usage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.models == nil {
		m.models = make(map[string]bool)
	}
	if model == "" {
		model = "unknown"
	}
	if !m.models[model] {
		if len(m.models) >= maxModelLabels {
			model = "other"
		}
		m.models[model] = true
	}
	for _, c := range []struct {
		typ string
		n   int64
	}{{"input", u.Input}, {"cached_input", u.CachedInput}, {"output", u.Output}, {"reasoning", u.Reasoning}, {"total", u.Total}} {
		m.c["tokens_total{type="+strconv.Quote(c.typ)+",model="+label(model)+",outcome="+label(outcome)+"}"] += float64(c.n)
	}
}

// label quotes a label value as the Prometheus text format wants it.
func label(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}
