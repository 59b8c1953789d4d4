package proxy

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/sessctl/sessctl/store"
)

// Metrics are sessctl's Prometheus metrics, in a registry of their own (never
// the process-global default registerer): what the proxy counts and times,
// the session log's size and health, held approvals, and the Go runtime and
// process collectors. No label carries a run id, a token, a host outside the
// known providers, or any prompt or answer text.
//
// The names are listed in README.md ("Metrics"); deploy/grafana/sessctl.json
// and deploy/prometheus/alerts.yml use them.
type Metrics struct {
	reg *prometheus.Registry

	requests         *prometheus.CounterVec
	refusals         *prometheus.CounterVec
	recordErrors     prometheus.Counter
	storeUnavailable prometheus.Counter
	tlsErrors        prometheus.Counter
	tlsResumed       prometheus.Counter
	passthrough      prometheus.Counter
	transparentConns prometheus.Counter
	transparentInt   prometheus.Counter
	witnessForks     prometheus.Counter
	// Floods and budgets (see docs/hardening.md).
	refusalsMerged   prometheus.Counter
	refusalSummaries prometheus.Counter
	connsRefused     *prometheus.CounterVec

	addedLatency    *prometheus.HistogramVec
	upstreamLatency *prometheus.HistogramVec
	firstDelta      *prometheus.HistogramVec
	storeCommit     prometheus.Histogram
	storeBatch      prometheus.Histogram
	storeErrors     prometheus.Counter

	inflight prometheus.Gauge
	tokens   *tokenMetrics // metrics_tokens.go

	mu    sync.Mutex
	bound map[string]bool // gauge sources already registered
}

// Buckets, in seconds unless named otherwise.
var (
	// sessctl's own work on one exchange: 100µs to ~3s.
	addedBuckets = prometheus.ExponentialBuckets(0.0001, 2, 15)
	// Upstream answers and first deltas: 25ms to ~100s.
	upstreamBuckets = prometheus.ExponentialBuckets(0.025, 2, 13)
	// One bbolt commit (fsync included): 100µs to ~3s.
	commitBuckets = prometheus.ExponentialBuckets(0.0001, 2, 15)
	// Records per commit: 1 to 4096 (the store's largest batch).
	batchBuckets = prometheus.ExponentialBuckets(1, 2, 13)
)

// Label values of sessctl_added_latency_seconds.
const (
	phaseRequest  = "request"  // request in → request out to the upstream
	phaseResponse = "response" // upstream's first byte → runner's first byte
)

// NewMetrics returns sessctl's metrics in a new registry, with the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), bound: map[string]bool{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessctl_requests_total",
		Help: "Exchanges recorded, by provider, outcome (forwarded, blocked, denied, ...) and status class (2xx..5xx, none).",
	}, []string{"provider", "outcome", "status_class"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessctl_refusals_total",
		Help: "Requests sessctl refused, by provider and error type (sessctl_policy_violation, sessctl_unauthenticated, ..., egress for connections outside the egress policy).",
	}, []string{"provider", "type"})
	m.recordErrors = counter("sessctl_record_errors_total", "Exchanges or refusals whose record could not be written.")
	m.storeUnavailable = counter("sessctl_store_unavailable_total", "Requests refused with 503 because the session log could not record (fail closed).")
	m.tlsErrors = counter("sessctl_tls_handshake_errors_total", "TLS handshakes with runners that failed.")
	m.tlsResumed = counter("sessctl_tls_resumed_total", "TLS handshakes with runners that resumed a session (a session ticket: no key exchange, no certificate).")
	m.passthrough = counter("sessctl_passthrough_total", "Tunnels spliced to a passthrough host without decryption.")
	m.transparentConns = counter("sessctl_transparent_connections_total", "Connections accepted on the transparent listener.")
	m.transparentInt = counter("sessctl_transparent_intercepted_total", "Transparent connections intercepted (TLS terminated by sessctl).")
	m.witnessForks = counter("sessctl_witness_fork_total", "Checkpoints a witness refused as inconsistent with what it saw before (a forked or rewritten log).")
	m.refusalsMerged = counter("sessctl_refusals_merged_total", "Refusals of unauthenticated clients counted in a summary record instead of a record of their own (over the per-source rate, or the disk below its reserve).")
	m.refusalSummaries = counter("sessctl_refusal_summaries_total", "Summary records written for merged refusals.")
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessctl_connections_refused_total",
		Help: "Connections refused unread over max_conns (bound=total) or max_conns_per_source (bound=source).",
	}, []string{"bound"})
	m.addedLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sessctl_added_latency_seconds",
		Help:    "Latency sessctl adds to an exchange: phase=request from request in to request out to the upstream (less the time spent reading the body and waiting for an approver), phase=response from the upstream's first answer byte to the runner's first answer byte.",
		Buckets: addedBuckets,
	}, []string{"phase"})
	m.upstreamLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sessctl_upstream_latency_seconds",
		Help:    "Time from sending a request upstream to the upstream's response headers.",
		Buckets: upstreamBuckets,
	}, []string{"provider"})
	m.firstDelta = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sessctl_time_to_first_delta_seconds",
		Help:    "Streamed answers: time from request in to the first answer bytes reaching the runner (less body read and approval wait).",
		Buckets: upstreamBuckets,
	}, []string{"provider"})
	m.storeCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sessctl_store_commit_seconds",
		Help:    "Duration of one session log commit (one bbolt transaction, fsync included).",
		Buckets: commitBuckets,
	})
	m.storeBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sessctl_store_batch_size",
		Help:    "Writes (records and in-flight notes) committed together in one session log transaction.",
		Buckets: batchBuckets,
	})
	m.storeErrors = counter("sessctl_store_commit_errors_total", "Session log commits that failed.")
	m.inflight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sessctl_inflight_exchanges",
		Help: "Requests (and WebSockets) inside intercepted tunnels being handled now.",
	})
	m.reg.MustRegister(
		m.requests, m.refusals, m.recordErrors, m.storeUnavailable, m.tlsErrors, m.tlsResumed, m.passthrough,
		m.transparentConns, m.transparentInt, m.witnessForks, m.addedLatency, m.upstreamLatency,
		m.refusalsMerged, m.refusalSummaries, m.connsRefused,
		m.firstDelta, m.storeCommit, m.storeBatch, m.storeErrors, m.inflight,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.tokens = newTokenMetrics(m.reg)
	// Series that exist before the first observation, so that dashboards
	// and alerts see zero rather than nothing.
	for _, p := range []string{phaseRequest, phaseResponse} {
		m.addedLatency.WithLabelValues(p)
	}
	for _, p := range knownProviders {
		m.upstreamLatency.WithLabelValues(p)
		m.firstDelta.WithLabelValues(p)
		m.refusals.WithLabelValues(p, errPolicyViolation)
		m.requests.WithLabelValues(p, string(store.OutcomeForwarded), "2xx")
	}
	m.refusals.WithLabelValues(providerOther, refusalEgress)
	m.connsRefused.WithLabelValues("total")
	m.connsRefused.WithLabelValues("source")
	return m
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// refusalEgress is the refusal type of connections outside the egress
// policy (refused before any HTTP exchange).
const refusalEgress = "egress"

// Registerer is where other parts of sessctl (the fleet shipper, the
// witness client) register metrics of their own, so that /metrics serves
// them too.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// WritePrometheus writes every metric in the Prometheus text format.
func (m *Metrics) WritePrometheus(w io.Writer) error {
	mfs, err := m.reg.Gather()
	if err != nil {
		return fmt.Errorf("metrics: gather: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("metrics: write: %w", err)
		}
	}
	return nil
}

// LogStats is the view of the session log that the gauges read at each
// scrape. *store.Store implements it.
type LogStats interface {
	Stats() store.Stats
}

// ObserveLog adds the session log's gauges, read at each scrape:
// sessctl_log_records, sessctl_log_bytes, sessctl_checkpoint_age_seconds
// and sessctl_checkpoint_unsigned_records. Later calls are ignored.
func (m *Metrics) ObserveLog(l LogStats) {
	if !m.bind("log") {
		return
	}
	stats := func(f func(store.Stats) float64) func() float64 {
		return func() float64 { return f(l.Stats()) }
	}
	m.reg.MustRegister(
		gaugeFunc("sessctl_log_records", "Records in the session log.",
			stats(func(s store.Stats) float64 { return float64(s.Records) })),
		gaugeFunc("sessctl_log_bytes", "Size of the session log database file.",
			stats(func(s store.Stats) float64 { return float64(s.Bytes) })),
		gaugeFunc("sessctl_checkpoint_age_seconds", "Age of the last signed checkpoint while records wait for one; 0 when every record is signed.",
			stats(func(s store.Stats) float64 {
				if s.Records <= s.CheckpointSize || s.CheckpointTime.IsZero() {
					return 0
				}
				return time.Since(s.CheckpointTime).Seconds()
			})),
		gaugeFunc("sessctl_checkpoint_unsigned_records", "Records not yet covered by a signed checkpoint.",
			stats(func(s store.Stats) float64 {
				if s.Records <= s.CheckpointSize {
					return 0
				}
				return float64(s.Records - s.CheckpointSize)
			})),
	)
}

// StoreCommitted records one session log commit of n writes that took d;
// pass it as store.Options.OnCommit.
func (m *Metrics) StoreCommitted(n int, d time.Duration, err error) {
	if err != nil {
		m.storeErrors.Inc()
		return
	}
	m.storeCommit.Observe(d.Seconds())
	m.storeBatch.Observe(float64(n))
}

// SetCentralLag is the fleet's hook: records written to this replica's log
// but not yet shipped to the central database, read at each scrape as
// sessctl_central_lag_records. Until it is called the metric is absent
// (a replica without a central database has no lag to report). Later calls
// are ignored.
func (m *Metrics) SetCentralLag(records func() float64) {
	if !m.bind("central_lag") {
		return
	}
	m.reg.MustRegister(gaugeFunc("sessctl_central_lag_records",
		"Records in this replica's log not yet shipped to the central database.", records))
}

// WitnessFork is the witness client's hook: it counts a checkpoint that a
// witness refused as inconsistent with one it saw before
// (sessctl_witness_fork_total).
func (m *Metrics) WitnessFork() { m.witnessForks.Inc() }

// bindServer adds the gauges read from a server's parts: the store's
// health and the held approvals.
func (m *Metrics) bindServer(o Options) {
	if !m.bind("server") {
		return
	}
	m.reg.MustRegister(gaugeFunc("sessctl_store_healthy",
		"1 while the session log can record, 0 while it cannot (traffic is refused).",
		func() float64 {
			if o.Store.Healthy() != nil {
				return 0
			}
			return 1
		}))
	if q := o.Approvals; q != nil {
		m.reg.MustRegister(gaugeFunc("sessctl_approvals_held", "Requests waiting for an approver.",
			func() float64 { return float64(len(q.Pending())) }))
	}
}

// bindLimits adds the gauges of a server's budgets: bytes held of
// max_buffered_bytes and connections open on the proxy listeners.
func (m *Metrics) bindLimits(s *Server) {
	if !m.bind("limits") {
		return
	}
	m.reg.MustRegister(
		gaugeFunc("sessctl_buffered_bytes", "Bytes held across exchanges (of max_buffered_bytes).",
			func() float64 { return float64(s.BufferedBytes()) }),
		gaugeFunc("sessctl_open_connections", "Connections open on the explicit and transparent listeners (of max_conns).",
			func() float64 { return float64(s.OpenConns()) }),
	)
}

// bind reports whether the gauges named by what are not yet registered,
// and marks them registered.
func (m *Metrics) bind(what string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bound[what] {
		return false
	}
	m.bound[what] = true
	return true
}

func gaugeFunc(name, help string, f func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
}

// statusClass is the label value for an HTTP status: "2xx".."5xx", or
// "none" when no status was sent (the runner went away).
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "none"
	}
	return strconv.Itoa(status/100) + "xx"
}

// track counts an exchange in flight; call the returned func when it ends.
func (m *Metrics) track() func() {
	m.inflight.Inc()
	return m.inflight.Dec
}
