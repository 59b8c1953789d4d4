package proxy

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sessctl/sessctl/store"
)

// BenchmarkObserveExchange is what the metrics (and, with tracing on, the
// span) cost one streamed exchange once it is recorded.
func BenchmarkObserveExchange(b *testing.B) {
	answer := []byte("data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n" +
		"data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n")
	for _, bc := range []struct {
		name   string
		tracer bool
	}{{"metrics", false}, {"metrics+span", true}} {
		b.Run(bc.name, func(b *testing.B) {
			s := &Server{opt: Options{Metrics: NewMetrics()}}
			if bc.tracer {
				s.tracer = noop.NewTracerProvider().Tracer("bench")
			}
			t := &tunnel{host: "api.openai.com"}
			b.ReportAllocs()
			for b.Loop() {
				now := time.Now()
				ex := &exchange{s: s, t: t, rec: &store.Record{Kind: store.KindExchange, Start: now, Path: "/v1/chat/completions", Model: "gpt-4o"}}
				done := s.opt.Metrics.track()
				ex.tm.upOut = now
				ex.upstreamAnswered(nil)
				ex.tm.upFirst, ex.tm.clientFirst = now, now
				ex.observe(200, store.OutcomeForwarded, answer)
				done()
			}
		})
	}
}
