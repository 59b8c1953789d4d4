package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/web"
)

const promptMarker = "PROMPT-MARKER-7f3a9c"

// metricsEnv is a whole sessctl in process with its metrics served by the
// admin handler, as serve wires them, and an upstream that answers JSON,
// or a stream held after its first event until release is closed.
type metricsEnv struct {
	*env
	m       *Metrics
	admin   *httptest.Server
	release chan struct{}
}

func newMetricsEnv(t *testing.T, opts ...envOption) *metricsEnv {
	me := &metricsEnv{m: NewMetrics(), release: make(chan struct{})}
	opts = append([]envOption{func(o *Options) { o.Metrics = me.m }}, opts...)
	me.env = newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18",`+
				`"choices":[{"index":0,"message":{"role":"assistant","content":"ANSWER-MARKER hi"}}],`+
				`"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"id\":\"chatcmpl-2\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"}}]}\n\n")
		w.(http.Flusher).Flush()
		<-me.release
		fmt.Fprint(w, "data: {\"id\":\"chatcmpl-2\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}, opts...)
	me.m.ObserveLog(me.store)
	me.admin = httptest.NewServer(web.NewHandler(web.Options{Health: me.store.Healthy, Metrics: me.m.WritePrometheus, Logger: quietLog()}))
	t.Cleanup(me.admin.Close)
	return me
}

// traffic sends a JSON exchange, a streamed one (checking the in-flight
// gauge while it is held) and a refusal.
func (me *metricsEnv) traffic(t *testing.T) {
	t.Helper()
	prompt := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + promptMarker + `"}]}`
	if resp, body := post(t, me.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, prompt); resp.StatusCode != 200 {
		t.Fatalf("JSON exchange: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"`+promptMarker+`"}]}`))
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	resp, err := me.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "first") {
		t.Fatalf("first delta %q, %v", line, err)
	}
	if got := gauge(t, me.scrape(t), "sessctl_inflight_exchanges"); got != 1 {
		t.Errorf("sessctl_inflight_exchanges = %v while a stream is held, want 1", got)
	}
	close(me.release)
	if rest, _ := io.ReadAll(br); !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("rest of stream %q", rest)
	}
	resp.Body.Close()
	if resp, _ := post(t, me.client, "https://api.openai.com/v1/chat/completions", "", prompt); resp.StatusCode != 401 {
		t.Fatalf("no credential: %d", resp.StatusCode)
	}
}

// scrape GETs /metrics from the admin listener and parses it.
func (me *metricsEnv) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(me.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	return mfs
}

// series finds the series of family name whose labels include want.
func series(mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.Metric {
		for k, v := range want {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				continue next
			}
		}
		return m
	}
	return nil
}

func gauge(t *testing.T, mfs map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	m := series(mfs, name, nil)
	if m == nil || m.Gauge == nil {
		t.Fatalf("no gauge %s", name)
	}
	return m.Gauge.GetValue()
}

func TestMetricsUnderTraffic(t *testing.T) {
	me := newMetricsEnv(t)
	me.traffic(t)
	mfs := me.scrape(t)

	counters := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sessctl_requests_total", map[string]string{"provider": "openai", "outcome": "forwarded", "status_class": "2xx"}, 2},
		{"sessctl_requests_total", map[string]string{"provider": "openai", "outcome": "unauthenticated", "status_class": "4xx"}, 1},
		{"sessctl_refusals_total", map[string]string{"provider": "openai", "type": errUnauthenticated}, 1},
		{"sessctl_refusals_total", map[string]string{"provider": "openai", "type": errPolicyViolation}, 0},
		{"sessctl_record_errors_total", nil, 0},
		{"sessctl_store_unavailable_total", nil, 0},
	}
	for _, c := range counters {
		m := series(mfs, c.name, c.labels)
		if m == nil || m.Counter == nil {
			t.Errorf("no counter %s%v", c.name, c.labels)
			continue
		}
		if got := m.Counter.GetValue(); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	histograms := []struct {
		name   string
		labels map[string]string
		want   uint64
	}{
		{"sessctl_added_latency_seconds", map[string]string{"phase": "request"}, 2},
		{"sessctl_added_latency_seconds", map[string]string{"phase": "response"}, 2},
		{"sessctl_upstream_latency_seconds", map[string]string{"provider": "openai"}, 2},
		{"sessctl_time_to_first_delta_seconds", map[string]string{"provider": "openai"}, 1},
	}
	for _, h := range histograms {
		m := series(mfs, h.name, h.labels)
		if m == nil || m.Histogram == nil {
			t.Errorf("no histogram %s%v", h.name, h.labels)
			continue
		}
		if got := m.Histogram.GetSampleCount(); got != h.want {
			t.Errorf("%s%v has %d observations, want %d", h.name, h.labels, got, h.want)
		}
		if m.Histogram.GetSampleSum() <= 0 || m.Histogram.GetSampleSum() > 30 {
			t.Errorf("%s%v sums to %vs", h.name, h.labels, m.Histogram.GetSampleSum())
		}
	}
	if got := gauge(t, mfs, "sessctl_inflight_exchanges"); got != 0 {
		t.Errorf("sessctl_inflight_exchanges = %v after the traffic, want 0", got)
	}
	if got := gauge(t, mfs, "sessctl_store_healthy"); got != 1 {
		t.Errorf("sessctl_store_healthy = %v, want 1", got)
	}
	if got, want := gauge(t, mfs, "sessctl_log_records"), float64(len(me.records())); got != want {
		t.Errorf("sessctl_log_records = %v, the log holds %v", got, want)
	}
	if got := gauge(t, mfs, "sessctl_log_bytes"); got <= 0 {
		t.Errorf("sessctl_log_bytes = %v", got)
	}
	if got := gauge(t, mfs, "sessctl_approvals_held"); got != 0 {
		t.Errorf("sessctl_approvals_held = %v", got)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if mfs[name] == nil {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
	// No label carries a credential, a prompt, a session id or a host
	// outside the known providers.
	forbidden := []string{testRunnerToken, testRealKey, promptMarker, "ANSWER-MARKER", "127.0.0.1"}
	for _, r := range me.records() {
		forbidden = append(forbidden, r.SessionID)
	}
	for name, mf := range mfs {
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				for _, f := range forbidden {
					if f != "" && strings.Contains(l.GetValue(), f) {
						t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
}

func TestMetricsHeldApprovalsGauge(t *testing.T) {
	q := approval.NewQueue(time.Minute)
	me := newMetricsEnv(t, func(o *Options) {
		o.Approvals = q
		o.Policies = []identity.Policy{{Name: "needs-human", Match: map[string]string{"runner": "ci-1"}, Approve: "always"}}
	})
	status := make(chan int, 1)
	go func() {
		resp, _ := post(t, me.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
		status <- resp.StatusCode
	}()
	held := waitPending(t, q, 1)
	mfs := me.scrape(t)
	if got := gauge(t, mfs, "sessctl_approvals_held"); got != 1 {
		t.Errorf("sessctl_approvals_held = %v with one request held, want 1", got)
	}
	if got := gauge(t, mfs, "sessctl_inflight_exchanges"); got != 1 {
		t.Errorf("sessctl_inflight_exchanges = %v with one request held, want 1", got)
	}
	if _, err := q.Decide(held[0].ID, approval.Denied, "admin", "not now"); err != nil {
		t.Fatal(err)
	}
	if got := <-status; got != 403 {
		t.Fatalf("denied request: %d", got)
	}
	mfs = me.scrape(t)
	if got := gauge(t, mfs, "sessctl_approvals_held"); got != 0 {
		t.Errorf("sessctl_approvals_held = %v after the decision, want 0", got)
	}
	m := series(mfs, "sessctl_refusals_total", map[string]string{"type": errApprovalDenied})
	if m == nil || m.Counter.GetValue() != 1 {
		t.Errorf("approval denial not counted as a refusal: %v", m)
	}
	// The wait for the approver is not latency sessctl added.
	if h := series(mfs, "sessctl_added_latency_seconds", map[string]string{"phase": "request"}); h.Histogram.GetSampleCount() != 0 {
		t.Errorf("a refused request observed request-phase latency: %v", h)
	}
}

// deployExprs returns the PromQL expressions of the Grafana dashboard
// (panel targets and template queries) and of the Prometheus alert rules.
func deployExprs(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	const dashboard, alerts = "../deploy/grafana/sessctl.json", "../deploy/prometheus/alerts.yml"
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, dashboard), &dash); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out[dashboard] = append(out[dashboard], tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		out[dashboard] = append(out[dashboard], v.Definition)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, alerts), &rules); err != nil {
		t.Fatalf("%s: %v", alerts, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out[alerts] = append(out[alerts], r.Expr)
		}
	}
	return out
}

// metricRef matches a metric name in a PromQL expression.
var metricRef = regexp.MustCompile(`\b(?:sessctl|go|process)_[a-z0-9_]+\b`)

// TestDeployReferencesLiveMetrics checks that every metric the Grafana
// dashboard and the Prometheus alerts use is served on a live /metrics.
func TestDeployReferencesLiveMetrics(t *testing.T) {
	me := newMetricsEnv(t)
	// The fleet shipper sets the central lag; here the hook is given a
	// source so that the gauge it registers is served.
	me.m.SetCentralLag(func() float64 { return 0 })
	me.traffic(t)
	mfs := me.scrape(t)
	for file, exprs := range deployExprs(t) {
		var refs []string
		for _, e := range exprs {
			refs = append(refs, metricRef.FindAllString(e, -1)...)
		}
		if len(refs) < 5 {
			t.Fatalf("%s references only %d metrics", file, len(refs))
		}
		for _, ref := range refs {
			name := ref
			if mfs[name] == nil {
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if base, ok := strings.CutSuffix(ref, suffix); ok && mfs[base] != nil && mfs[base].GetType() == dto.MetricType_HISTOGRAM {
						name = base
					}
				}
			}
			if mfs[name] == nil {
				t.Errorf("%s uses %s, which /metrics does not serve", file, ref)
			}
		}
	}
}

// TestMetricsWhenTheStoreFails: what the "store failing" alerts read.
func TestMetricsWhenTheStoreFails(t *testing.T) {
	me := newMetricsEnv(t)
	if err := me.store.Close(); err != nil {
		t.Fatal(err)
	}
	if resp, body := post(t, me.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	mfs := me.scrape(t)
	if got := gauge(t, mfs, "sessctl_store_healthy"); got != 0 {
		t.Errorf("sessctl_store_healthy = %v with the store closed, want 0", got)
	}
	if m := series(mfs, "sessctl_store_unavailable_total", nil); m == nil || m.Counter.GetValue() != 1 {
		t.Errorf("sessctl_store_unavailable_total = %v, want 1", m)
	}
}
