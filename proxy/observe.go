package proxy

import (
	"context"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessctl/sessctl/store"
)

// Provider names: the gen_ai.provider.name values of the OpenTelemetry
// GenAI semantic conventions, also the provider label of the metrics.
const (
	providerOpenAI    = "openai"
	providerAnthropic = "anthropic"
	providerAzure     = "azure.ai.openai"
	providerOther     = "other"
	providerSessctl   = "sessctl" // the token exchange at TokenHost
)

// knownProviders are the providers whose series exist from the start.
var knownProviders = []string{providerOpenAI, providerAnthropic, providerAzure}

// providerOf names the provider behind an intercepted host. Any other host
// is "other": a metric label never carries an arbitrary host name.
func providerOf(host string) string {
	switch {
	case host == "api.openai.com":
		return providerOpenAI
	case host == "api.anthropic.com":
		return providerAnthropic
	case strings.HasSuffix(host, ".openai.azure.com"):
		return providerAzure
	case host == TokenHost:
		return providerSessctl
	}
	return providerOther
}

// timing notes the moments of one exchange that the latency metrics and
// its span are made of.
type timing struct {
	// waited is time that was not sessctl's doing: reading the runner's
	// body, and waiting for an approver.
	waited time.Duration
	// upOut is when the request went to the upstream.
	upOut time.Time
	// upFirst is when the answer's first bytes were read from the
	// upstream (streams), or its last (answers masked whole).
	upFirst time.Time
	// clientFirst is when the answer's first bytes were written to the
	// runner (streams); whole is set for answers masked whole, which are
	// written right after their record.
	clientFirst time.Time
	whole       bool
	// errType is the sessctl_* error type of a refusal.
	errType string
	// parent is the runner's trace context (a traceparent header), if any.
	parent trace.SpanContext
}

// wait adds the time since t0 to the time that was not sessctl's doing.
func (tm *timing) wait(t0 time.Time) { tm.waited += time.Since(t0) }

// traceParent returns the trace context the runner sent, if tracing is on.
func (s *Server) traceParent(h http.Header) trace.SpanContext {
	if s.tracer == nil {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(h))
	return trace.SpanContextFromContext(ctx)
}

// upstreamAnswered notes that the upstream's response headers arrived (or
// that it failed).
func (ex *exchange) upstreamAnswered(err error) {
	now, m := time.Now(), ex.s.opt.Metrics
	if err != nil || ex.tm.upOut.IsZero() {
		return
	}
	m.upstreamLatency.WithLabelValues(providerOf(ex.t.host)).Observe(now.Sub(ex.tm.upOut).Seconds())
	added := ex.tm.upOut.Sub(ex.rec.Start) - ex.tm.waited
	m.addedLatency.WithLabelValues(phaseRequest).Observe(max(added, 0).Seconds())
}

// observe counts a finished exchange, observes its answer's latencies and
// ends its span. answer is the answer as the runner got it, read for the
// token usage only (never exported).
func (ex *exchange) observe(status int, outcome store.Outcome, answer []byte) {
	now, m := time.Now(), ex.s.opt.Metrics
	provider := providerOf(ex.t.host)
	m.requests.WithLabelValues(provider, string(outcome), statusClass(status)).Inc()
	if ex.rec.Kind == store.KindRefused && ex.tm.errType != "" {
		m.refusals.WithLabelValues(provider, ex.tm.errType).Inc()
	}
	if !ex.tm.upFirst.IsZero() {
		first := ex.tm.clientFirst
		if ex.tm.whole {
			first = now
		}
		if !first.IsZero() && !first.Before(ex.tm.upFirst) {
			m.addedLatency.WithLabelValues(phaseResponse).Observe(first.Sub(ex.tm.upFirst).Seconds())
		}
		if !ex.tm.whole && !ex.tm.clientFirst.IsZero() {
			ttfd := ex.tm.clientFirst.Sub(ex.rec.Start) - ex.tm.waited
			m.firstDelta.WithLabelValues(provider).Observe(max(ttfd, 0).Seconds())
		}
	}
	ex.span(now, status, outcome, provider, answer)
}

// span exports the exchange as one span following the OpenTelemetry GenAI
// semantic conventions. It carries the operation, provider, model, token
// usage, status and error type; never prompt or answer text, a credential
// or the runner's identity.
func (ex *exchange) span(end time.Time, status int, outcome store.Outcome, provider string, answer []byte) {
	tr := ex.s.tracer
	if tr == nil || ex.t.host == TokenHost {
		return
	}
	op := operationOf(ex.rec.Path)
	name := op
	if ex.rec.Model != "" {
		name += " " + ex.rec.Model
	}
	ctx := context.Background()
	if ex.tm.parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, ex.tm.parent)
	}
	attrs := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", op),
		attribute.String("gen_ai.provider.name", provider),
		attribute.String("server.address", ex.t.host),
		attribute.String("http.request.method", ex.rec.Method),
		attribute.String("url.path", ex.rec.Path),
		attribute.String("sessctl.outcome", string(outcome)),
		attribute.String("sessctl.session.id", ex.rec.SessionID),
	}
	if ex.rec.Model != "" {
		attrs = append(attrs, attribute.String("gen_ai.request.model", ex.rec.Model))
	}
	if status > 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", status))
	}
	if u := usageOf(answer); u.known() {
		if u.Model != "" {
			attrs = append(attrs, attribute.String("gen_ai.response.model", truncate(u.Model, 200)))
		}
		if u.ID != "" {
			attrs = append(attrs, attribute.String("gen_ai.response.id", truncate(u.ID, 200)))
		}
		if u.In > 0 {
			attrs = append(attrs, attribute.Int64("gen_ai.usage.input_tokens", u.In))
		}
		if u.Out > 0 {
			attrs = append(attrs, attribute.Int64("gen_ai.usage.output_tokens", u.Out))
		}
	}
	errType := ""
	switch {
	case ex.tm.errType != "":
		errType = ex.tm.errType
	case outcome != store.OutcomeForwarded:
		errType = string(outcome)
	case status >= 400:
		errType = http.StatusText(status)
		if errType == "" {
			errType = "_OTHER"
		}
	}
	if errType != "" {
		attrs = append(attrs, attribute.String("error.type", errType))
	}
	_, sp := tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(ex.rec.Start), trace.WithAttributes(attrs...))
	if errType != "" {
		sp.SetStatus(codes.Error, errType)
	}
	sp.End(trace.WithTimestamp(end))
}

// operationOf names the GenAI operation of an API path
// (gen_ai.operation.name).
func operationOf(path string) string {
	switch {
	case strings.HasSuffix(path, "/chat/completions"), strings.HasSuffix(path, "/messages"):
		return "chat"
	case strings.HasSuffix(path, "/responses"):
		return "generate_content"
	case strings.HasSuffix(path, "/completions"):
		return "text_completion"
	case strings.HasSuffix(path, "/embeddings"):
		return "embeddings"
	}
	return "other"
}
