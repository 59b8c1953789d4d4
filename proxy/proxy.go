package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/budget"
	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/connlimit"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

// Recorder is where exchanges are recorded. *store.Store implements it.
type Recorder interface {
	// BeginQueued notes an exchange about to be forwarded, so that a
	// crash before its record leaves an aborted record, not silence. The
	// note is committed while the exchange is forwarded; wait returns once
	// it is durable, and is called before any answer byte reaches the
	// runner.
	BeginQueued(ctx context.Context, r *store.Record) (wait func(context.Context) error, err error)
	// Hurry asks for the notes queued so far to be committed now rather
	// than held for their records: for an answer that will stream, whose
	// first byte waits for its note.
	Hurry()
	// Append returns once the record is durable.
	Append(ctx context.Context, r *store.Record) (store.Receipt, error)
	// Healthy reports whether records can be written; traffic is refused
	// while it returns an error.
	Healthy() error
	// SecretKey is the key under which masked secrets are HMACed.
	SecretKey() []byte
}

// Authenticator tells who a runner is from the credential it presents.
// *identity.Authenticator implements it.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (*identity.Identity, error)
}

// Certs mints the certificates presented to runners. *ca.Authority
// implements it.
type Certs interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// Options configure a Server. Certs, Store, Auth, Rules and Upstream are
// required. Without a default key in Keys, intercepted requests get 503.
type Options struct {
	// Intercept lists the hosts that are MITMed; Passthrough the hosts that
	// are tunnelled without decryption. Everything else is refused.
	Intercept, Passthrough []string
	Certs                  Certs
	Store                  Recorder
	Auth                   Authenticator
	// Policies are matched in order against each identity; none means
	// allow everything with full recording.
	Policies []identity.Policy
	// Rules returns the rule set in force (it may change on reload).
	Rules func() *rules.Set
	// Exchanger, when set, serves the token exchange at TokenHost (the
	// CA must be able to mint for it).
	Exchanger Exchanger
	// Approvals holds requests that need a human; nil treats approval as
	// a block.
	Approvals *approval.Queue
	// ApprovalMode is "hold" (default) or "ticket".
	ApprovalMode string
	// Providers assigns a provider (by name) to intercepted hosts other
	// than the providers' own (see provider.ForHost). New refuses an
	// intercepted host with no known provider.
	Providers map[string]string
	// Keys holds the real API keys by provider; a provider's default key
	// is named "". A request gets a key of its host's provider only.
	Keys provider.Keys
	// Upstream is the transport to the real API (see NewTransport).
	Upstream http.RoundTripper
	// UpstreamDial dials the upstream for WebSockets (the same dialer as
	// the HTTP transport, honouring an upstream address override); nil
	// uses a net.Dialer.
	UpstreamDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// PassthroughDial dials the real destination of passthrough tunnels;
	// nil uses a net.Dialer. Tests set it; upstream_addr never applies.
	PassthroughDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// UpstreamTLS is the client TLS configuration for upstream WebSockets.
	UpstreamTLS *tls.Config
	// MaxBody bounds request bodies and non-streamed answers. This and the
	// other limits below take config.Default's value when zero.
	MaxBody int64
	// RecordBodyLimit bounds how much of a streamed answer is recorded
	// (default: config's record_body_limit); the record says where it was cut.
	RecordBodyLimit int64
	// Holdback bounds the stream masker's held-back tail.
	Holdback int
	// MaxInflight bounds the exchanges one identity may have in progress
	// at once (default: config's max_inflight); more get 429.
	MaxInflight int
	// Ports are the CONNECT ports allowed (default: config's connect_ports).
	Ports []string
	// IdleTimeout ends a passthrough tunnel or WebSocket with no traffic
	// for this long (default 10 minutes).
	IdleTimeout time.Duration
	// WSMaxMessage bounds one WebSocket message.
	WSMaxMessage int64
	// Refusals bound the records refusals of unauthenticated clients
	// add to the log (default: config's refusal_* keys).
	Refusals RefusalLimits
	// MaxBufferedBytes bounds the bytes held across all exchanges
	// (prompts being read, answers held whole or copied for their
	// record); over it a request gets 503 (default: config's
	// max_buffered_bytes).
	MaxBufferedBytes int64
	// MaxConns and MaxConnsPerSource bound the connections the explicit
	// and transparent listeners hold open together, in total and per
	// source address (default: config's max_conns,
	// max_conns_per_source). Over them a connection gets 503 / 429 (the
	// transparent listener closes it) without being read.
	MaxConns, MaxConnsPerSource int
	// LowDisk, if set, reports that the log's volume is below its free
	// space reserve: refusals are then only counted in summaries.
	LowDisk func() bool
	// Budget admits requests against their policy's budget:; nil counts
	// in memory from zero (the server seeds one from the store).
	Budget  *budget.Meter
	Logger  *slog.Logger
	Metrics *Metrics
	// Tracing, when set, gets one span per exchange (GenAI semantic
	// conventions; never prompt or answer text).
	Tracing trace.TracerProvider
}

// Server is the proxy. Its explicit listener speaks the HTTP proxy
// protocol (CONNECT); intercepted tunnels from it and from the transparent
// listener are served by one inner HTTP server.
type Server struct {
	opt       Options
	log       *slog.Logger
	intercept map[string]bool
	// providers is the provider of each intercepted host.
	providers map[string]provider.Name
	pass      map[string]bool
	inner     *http.Server
	conns     *connListener
	// runnerTLS terminates every runner connection (see newRunnerTLS).
	runnerTLS *tls.Config
	front     http.Handler
	wsClient  *http.Client
	inflight  *inflight
	ports     map[string]bool
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	refusals  *refusalLog
	mem       *memBudget
	connLimit *connlimit.Limiter
	// recordErrs logs repeated identical record failures once.
	recordErrs, unavailErrs errLog
	tracer                  trace.Tracer // nil without Options.Tracing
	// ctx ends when the server closes: tunnels and WebSockets watch it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks opts and builds a Server.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Certs == nil, opts.Store == nil, opts.Auth == nil, opts.Rules == nil, opts.Upstream == nil:
		return nil, errors.New("proxy: Certs, Store, Auth, Rules and Upstream are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	opts.Budget = newMeter(opts)
	// Unset limits take sessctl's defaults, which live in config.
	def := config.Default()
	if opts.MaxBody <= 0 {
		opts.MaxBody = def.MaxBody
	}
	if opts.RecordBodyLimit <= 0 {
		opts.RecordBodyLimit = def.RecordBodyLimit
	}
	if opts.Holdback <= 0 {
		opts.Holdback = def.StreamHoldback
	}
	if opts.WSMaxMessage <= 0 {
		opts.WSMaxMessage = def.WSMaxMessage
	}
	if opts.ApprovalMode == "" {
		opts.ApprovalMode = def.ApprovalMode
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = int(def.MaxInflight)
	}
	if len(opts.Ports) == 0 {
		opts.Ports = def.ConnectPorts
	}
	if opts.Refusals.PerMinute <= 0 {
		opts.Refusals.PerMinute = def.RefusalRecordsPerMinute
	}
	if opts.Refusals.Burst <= 0 {
		opts.Refusals.Burst = def.RefusalBurst
	}
	if opts.Refusals.Interval <= 0 {
		opts.Refusals.Interval = time.Duration(def.RefusalSummaryInterval)
	}
	if opts.MaxBufferedBytes <= 0 {
		opts.MaxBufferedBytes = def.MaxBufferedBytes
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = def.MaxConns
	}
	if opts.MaxConnsPerSource <= 0 {
		opts.MaxConnsPerSource = def.MaxConnsPerSource
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if opts.UpstreamDial == nil {
		opts.UpstreamDial = d.DialContext
	}
	if opts.PassthroughDial == nil {
		opts.PassthroughDial = d.DialContext
	}
	s := &Server{
		opt:       opts,
		log:       opts.Logger,
		intercept: hostSet(opts.Intercept),
		pass:      hostSet(opts.Passthrough),
		conns:     newConnListener(),
		ports:     hostSet(opts.Ports),
		inflight:  newInflight(opts.MaxInflight),
		dial:      opts.PassthroughDial,
		refusals:  newRefusalLog(opts.Refusals, opts.LowDisk),
		mem:       &memBudget{max: opts.MaxBufferedBytes},
		connLimit: connlimit.New(opts.MaxConns, opts.MaxConnsPerSource),
	}
	s.providers = make(map[string]provider.Name, len(s.intercept))
	for h := range s.intercept {
		p, ok := provider.ForHost(h, opts.Providers)
		if !ok {
			return nil, fmt.Errorf("proxy: intercepted host %s has no known provider: assign one in providers", h)
		}
		s.providers[h] = p
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.runSummaries(s.ctx)
	opts.Metrics.bindLimits(s)
	opts.Metrics.bindServer(opts)
	if opts.Tracing != nil {
		s.tracer = opts.Tracing.Tracer("github.com/sessctl/sessctl/proxy")
	}
	if opts.Exchanger != nil {
		s.intercept[TokenHost] = true
	}
	s.inner = &http.Server{
		Handler:           http.HandlerFunc(s.serveExchange),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       withTunnel,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	s.runnerTLS = s.newRunnerTLS()
	s.front = s.newFront()
	s.wsClient = newWSClient(opts.UpstreamDial, opts.UpstreamTLS)
	go s.inner.Serve(s.conns)
	return s, nil
}

func hostSet(hosts []string) map[string]bool {
	m := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		m[strings.TrimSuffix(strings.ToLower(h), ".")] = true
	}
	return m
}

// ServeExplicit serves the HTTP proxy protocol on l until ctx is done.
func (s *Server) ServeExplicit(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.front,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	l = s.connLimit.Listener(l, s.refuseConn)
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("proxy: explicit listener: %w", err)
	}
	return nil
}

// Close stops the server: requests in progress get a grace period to
// finish (and be recorded), then every connection, tunnel and WebSocket is
// closed, and Close waits for them.
func (s *Server) Close() error {
	s.conns.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.inner.Shutdown(ctx)
	s.cancel()
	if err != nil {
		err = s.inner.Close()
	}
	s.wg.Wait()
	s.flushSummaries()
	return err
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.opt.Metrics }
