// Package web serves sessctl's admin listener: health and metrics for
// operators, and, behind admin tokens, the JSON API under /api/v1/ and the
// browser UI.
//
// # Authentication
//
// /healthz and /metrics are open, and /log/ (the log as C2SP tlog-tiles)
// if Options.LogPublic. Everything else needs an admin token
// (Options.AdminTokens; only hashes are kept, compared in constant time):
// API clients send "Authorization: Bearer <token>"; a browser logs in with
// a form that posts the token once and gets an HttpOnly, SameSite=Strict
// session cookie naming a server-side login that expires. Tokens never
// travel in URLs. State-changing requests made with the cookie must carry
// the login's CSRF token (the X-CSRF-Token header or the csrf form field),
// and cross-origin state-changing requests are refused outright
// ([net/http.CrossOriginProtection]).
//
// # API
//
//	GET  /api/v1/sessions?since=&until=&runner=&repo=&run=&sha=&actor=&outcome=&rule=&host=&kind=&session=&limit=&after=
//	GET  /api/v1/sessions/{id}          record, prompt and answer
//	GET  /api/v1/sessions/{id}/answer   the answer's bytes as the runner got them
//	GET  /api/v1/export?from=SEQ&bodies=1  JSONL, one record a line with its chain hash
//	GET  /api/v1/usage?by=repo,model&since=7d  usage totals per group
//	GET  /api/v1/usage/report?since=7d  the Usage page's charts as data
//	GET  /api/v1/approvals              pending requests
//	GET  /api/v1/approvals/{id}
//	POST /api/v1/approvals/{id}/approve {"reason": "..."}
//	POST /api/v1/approvals/{id}/deny    {"reason": "..."} (reason required)
//	GET  /api/v1/approvals/stream       server-sent events: pending, held, decided
//
// # Pages
//
// Server-rendered html/template pages with embedded CSS and a small
// embedded script; no inline script or style, a strict
// Content-Security-Policy, and every recorded value escaped.
//
// # Cost of queries
//
// Listings go through the query service (internal/query), whose Find
// hands every filter to the store, whose secondary indexes
// (repository, run, sha, actor, rule, runner, outcome, host, kind) are
// intersected newest first, so a query decodes about one record per record
// it returns: a repo+run query over a million records answers in under a
// millisecond (store/BENCHMARKS.md).
package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/query"
)

// Options configure the admin handler.
type Options struct {
	// Health reports whether sessctl can do its job (the store can record);
	// /healthz answers 503 with the reason while it returns an error.
	Health func() error
	// Warnings, if set, lists conditions that will close the gate if they
	// go on (free disk space near its reserve); /healthz shows them while
	// it still answers 200.
	Warnings func() []error
	// HealthDetail, if set, adds its members to the /healthz answer (e.g.
	// "central": the shipping lag); they never make it fail.
	HealthDetail func() map[string]any
	// Metrics writes the counters in Prometheus text format.
	Metrics func(w io.Writer) error
	Logger  *slog.Logger

	// Sessions is the session log the API and UI read. Without it the
	// session endpoints answer 503.
	Sessions query.Source
	// Approvals is the inbox of held requests: this process's
	// *approval.Queue, or a fleet's shared inbox. Without it the approval
	// endpoints answer 503.
	Approvals approval.Inbox
	// AdminTokens are the admin credentials (token_sha256 or token); the
	// name is recorded as the approver of each decision. With none, the
	// API and UI refuse every request.
	AdminTokens []identity.Runner
	// Snapshot, if set, writes a consistent copy of the log database
	// (GET /api/v1/snapshot, for `sessctl verify --admin`).
	Snapshot func(w io.Writer) (int64, error)
	// Verify, if set, checks that record seq is in the signed log (for
	// the "verified" badge). It returns false with an error saying why
	// when it cannot tell (e.g. not yet checkpointed).
	Verify func(seq uint64) (bool, error)
	// Log, if set, serves the log as C2SP tlog-tiles under /log/ (it sees
	// paths with /log stripped), behind the admin token unless LogPublic.
	Log       http.Handler
	LogPublic bool
	// SessionTTL is how long a browser login lasts (DefaultSessionTTL if
	// zero).
	SessionTTL time.Duration
	// Now returns the current time; time.Now if nil. Tests set it.
	Now func() time.Time
}

// handler serves the admin API and UI.
type handler struct {
	o      Options
	log    *slog.Logger
	admins []adminToken
	logins *sessions
	pages  *pages
	// adminErr is set when the admin tokens could not be compiled: the
	// API and UI are then disabled.
	adminErr error
}

// NewHandler returns the admin listener's handler. A malformed admin token
// is logged and disables the API and UI (the health and metrics endpoints
// keep working); config validation catches it before.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	h := &handler{o: o, log: o.Logger, logins: newSessions(o.SessionTTL, o.Now), pages: loadPages()}
	if admins, err := compileAdminTokens(o.AdminTokens); err != nil {
		h.log.Error("admin API and UI disabled", "err", err)
	} else {
		h.admins = admins
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if o.Metrics == nil {
			return
		}
		if err := o.Metrics(w); err != nil {
			h.log.Warn("writing metrics", "err", err)
		}
	})

	api := http.NewServeMux()
	api.HandleFunc("GET /api/v1/sessions", h.apiSessions)
	api.HandleFunc("GET /api/v1/sessions/{id}", h.apiSession)
	api.HandleFunc("GET /api/v1/sessions/{id}/answer", h.apiAnswer)
	api.HandleFunc("GET /api/v1/export", h.apiExport)
	api.HandleFunc("GET /api/v1/snapshot", h.apiSnapshot)
	api.HandleFunc("GET /api/v1/usage", h.apiUsage)
	api.HandleFunc("GET /api/v1/usage/report", h.apiUsageReport)
	api.HandleFunc("GET /api/v1/approvals", h.apiApprovals)
	api.HandleFunc("GET /api/v1/approvals/stream", h.apiApprovalStream)
	api.HandleFunc("GET /api/v1/approvals/{id}", h.apiApproval)
	api.HandleFunc("POST /api/v1/approvals/{id}/approve", h.apiDecide(approval.Approved))
	api.HandleFunc("POST /api/v1/approvals/{id}/deny", h.apiDecide(approval.Denied))
	api.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such endpoint")
	})
	mux.Handle("/api/", h.requireAPI(api))
	if o.Log != nil {
		lh := http.StripPrefix("/log", o.Log)
		if !o.LogPublic {
			lh = h.requireAPI(lh)
		}
		mux.Handle("/log/", lh)
	}

	// Profiles of the running gate (CPU, heap, goroutines) for the
	// operator who asks why it is slow; admin token required.
	prof := http.NewServeMux()
	prof.HandleFunc("/debug/pprof/", pprof.Index)
	prof.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	prof.HandleFunc("/debug/pprof/profile", pprof.Profile)
	prof.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	prof.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/pprof/", h.requireAPI(prof))

	h.routePages(mux)

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	return cop.Handler(mux)
}

// requireAPI authenticates API requests: 401 without a valid credential,
// 403 for a cookie-authenticated state change without the CSRF token.
func (h *handler) requireAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Cache-Control", "no-store")
		p, err := h.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sessctl admin"`)
			apiError(w, http.StatusUnauthorized, err.Error())
			return
		}
		if !safeMethod(r.Method) && !checkCSRF(p, r) {
			apiError(w, http.StatusForbidden, "missing or wrong CSRF token")
			return
		}
		next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}
