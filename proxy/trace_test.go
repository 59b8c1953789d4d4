package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/internal/tracing"
)

// otlpReceiver is an in-process OTLP/HTTP collector: it decodes each
// protobuf export request and keeps the raw bytes too.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	raw   [][]byte
	spans []*tracepb.Span
	res   []*commonpb.KeyValue
	paths []string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rc := &otlpReceiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a POSTed protobuf", http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.raw = append(rc.raw, b)
		rc.paths = append(rc.paths, r.URL.Path)
		for _, rs := range req.ResourceSpans {
			rc.res = append(rc.res, rs.GetResource().GetAttributes()...)
			for _, ss := range rs.ScopeSpans {
				rc.spans = append(rc.spans, ss.Spans...)
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *otlpReceiver) snapshot() ([]*tracepb.Span, [][]byte, []string, []*commonpb.KeyValue) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*tracepb.Span(nil), rc.spans...), append([][]byte(nil), rc.raw...),
		append([]string(nil), rc.paths...), append([]*commonpb.KeyValue(nil), rc.res...)
}

// attrs flattens span attributes to strings.
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch v.Value.(type) {
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = strconv.FormatInt(v.GetIntValue(), 10)
		default:
			m[kv.Key] = v.GetStringValue()
		}
	}
	return m
}

func TestTracesFollowGenAIConventions(t *testing.T) {
	rc := newOTLPReceiver(t)
	tp, err := tracing.New(rc.srv.URL, tracing.Options{BatchTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	me := newMetricsEnv(t, func(o *Options) { o.Tracing = tp })
	me.traffic(t)
	// A runner that traces its own work sends traceparent: the
	// exchange's span joins that trace.
	const parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/embeddings",
		strings.NewReader(`{"model":"text-embedding-3-small","input":"`+promptMarker+`"}`))
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	req.Header.Set("Traceparent", "00-"+parentTrace+"-00f067aa0ba902b7-01")
	if resp, body := do(t, me.client, req); resp.StatusCode != 200 {
		t.Fatalf("embeddings: %d %s", resp.StatusCode, body)
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans, raw, paths, res := rc.snapshot()
	if len(spans) != 4 {
		t.Fatalf("collector got %d spans, want 4 (JSON, stream, refusal, embeddings)", len(spans))
	}
	for _, p := range paths {
		if p != "/v1/traces" {
			t.Errorf("export to %q, want /v1/traces", p)
		}
	}
	if got := attrs(res)["service.name"]; got != "sessctl" {
		t.Errorf("resource service.name = %q", got)
	}
	type want struct {
		name  string
		attrs map[string]string
		error bool
	}
	wants := []want{
		{"chat gpt-4o-mini", map[string]string{
			"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
			"gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-1",
			"gen_ai.usage.input_tokens": "11", "gen_ai.usage.output_tokens": "3",
			"http.response.status_code": "200", "server.address": "api.openai.com", "sessctl.outcome": "forwarded",
		}, false},
		{"chat gpt-4o-mini", map[string]string{
			"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.id": "chatcmpl-2",
			"gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "5",
		}, false},
		{"chat", map[string]string{
			"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "error.type": errUnauthenticated,
			"http.response.status_code": "401", "sessctl.outcome": "unauthenticated",
		}, true},
		{"embeddings text-embedding-3-small", map[string]string{
			"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small",
		}, false},
	}
	// Spans are exported in the order they ended, which a refusal's
	// record may blur: match each wanted span by name and attributes.
	byWant := make([]*tracepb.Span, len(wants))
	for i, w := range wants {
		for _, sp := range spans {
			got := attrs(sp.Attributes)
			match := sp.Name == w.name
			for k, v := range w.attrs {
				match = match && got[k] == v
			}
			if match {
				byWant[i] = sp
			}
		}
		sp := byWant[i]
		if sp == nil {
			for _, sp := range spans {
				t.Logf("span %q %v", sp.Name, attrs(sp.Attributes))
			}
			t.Fatalf("no span %q with %v", w.name, w.attrs)
		}
		got := attrs(sp.Attributes)
		if sp.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("span %q kind %v, want client", sp.Name, sp.Kind)
		}
		if _, has := got["error.type"]; has != w.error {
			t.Errorf("span %d %q: error.type = %q", i, sp.Name, got["error.type"])
		}
		if w.error != (sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR) {
			t.Errorf("span %d %q: status %v", i, sp.Name, sp.GetStatus())
		}
		if sp.EndTimeUnixNano <= sp.StartTimeUnixNano {
			t.Errorf("span %d %q: start %d, end %d", i, sp.Name, sp.StartTimeUnixNano, sp.EndTimeUnixNano)
		}
	}
	if got := hex.EncodeToString(byWant[3].TraceId); got != parentTrace {
		t.Errorf("span with a runner's traceparent is in trace %s, want %s", got, parentTrace)
	}
	if hex.EncodeToString(byWant[0].TraceId) == parentTrace || len(byWant[0].ParentSpanId) != 0 {
		t.Errorf("span without traceparent has a parent")
	}
	// Never prompt or answer text, nor any credential.
	for _, b := range raw {
		for _, secret := range []string{promptMarker, "ANSWER-MARKER", `"first"`, testRunnerToken, testRealKey} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("an export carries %q", secret)
			}
		}
	}
}

// TestWebSocketTraces checks the span of each response.create carried on
// a WebSocket: it joins the runner's trace and reads the usage from the
// events.
func TestWebSocketTraces(t *testing.T) {
	rc := newOTLPReceiver(t)
	tp, err := tracing.New(rc.srv.URL, tracing.Options{BatchTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	e := newEnv(t, wsUpstream(t, make(chan string, 1)), func(o *Options) { o.Tracing = tp })
	const parentTrace = "0af7651916cd43dd8448eb211c80319c"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://api.openai.com/v1/responses", &websocket.DialOptions{
		HTTPClient: e.client,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + testRunnerToken},
			"Traceparent": {"00-" + parentTrace + "-b7ad6b7169203331-01"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	create := `{"type":"response.create","model":"gpt-5-codex","input":[{"role":"user","content":"` + promptMarker + `"}]}`
	if err := c.Write(ctx, websocket.MessageText, []byte(create)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, "response.completed")
	c.Close(websocket.StatusNormalClosure, "")
	testutil.WaitFor(t, 0, "the WebSocket exchange's span", func() bool {
		tp.ForceFlush(context.Background())
		spans, _, _, _ := rc.snapshot()
		return len(spans) >= 1
	})
	spans, raw, _, _ := rc.snapshot()
	sp := spans[0]
	got := attrs(sp.Attributes)
	for k, v := range map[string]string{
		"gen_ai.operation.name": "generate_content", "gen_ai.request.model": "gpt-5-codex",
		"gen_ai.response.id": "resp_0", "gen_ai.provider.name": "openai", "sessctl.outcome": "forwarded",
	} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (span %q %v)", k, got[k], v, sp.Name, got)
		}
	}
	if tid := hex.EncodeToString(sp.TraceId); tid != parentTrace {
		t.Errorf("WebSocket span in trace %s, want the runner's %s", tid, parentTrace)
	}
	for _, b := range raw {
		if bytes.Contains(b, []byte(promptMarker)) || bytes.Contains(b, []byte("AKIAIOSFO")) {
			t.Error("an export carries prompt or answer text")
		}
	}
}
