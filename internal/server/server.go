// Package server runs a sessctl gate from its configuration: [Run] opens
// the CA (sessctl's own or a step-ca enrollment), the session log, the
// runner and admin tokens, the rules and the upstream keys; serves the
// proxy (explicit and transparent listeners) and the admin API; reloads the
// rules when their file changes and the rules and CA on SIGHUP; prunes
// bodies past retention.bodies; posts each signed checkpoint to
// checkpoint_url and has it cosigned by the witnesses; serves the log as
// C2SP tlog-tiles under /log/; and closes it all when its context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/budget"
	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/internal/diskspace"
	"github.com/sessctl/sessctl/internal/keyfile"
	"github.com/sessctl/sessctl/internal/progress"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/internal/tracing"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/proxy"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/tiles"
	"github.com/sessctl/sessctl/web"
	"github.com/sessctl/sessctl/witness"
)

// Run opens what cfg names (the CA, the session log, the runner and admin
// tokens, the rules, the upstream keys), serves the proxy and the admin
// API, reloads the rules and the CA, prunes bodies, posts checkpoints, and
// shuts everything down when ctx is done. A SIGHUP reloads the rules and
// the CA.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	s, err := open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.close()
	signal.Notify(s.hup, syscall.SIGHUP)
	defer signal.Stop(s.hup)
	return s.serve(ctx)
}

// server is one running sessctl: what open made, for serve to run and
// close to release.
type server struct {
	cfg     *config.Config
	log     *slog.Logger
	certs   *caSource
	store   *store.Store
	fleet   *fleet // shipping to central_dsn
	rules   atomic.Pointer[rules.Set]
	queue   *approval.Queue
	proxy   *proxy.Server
	admin   *http.Server
	proxyLn net.Listener
	adminLn net.Listener
	transLn net.Listener      // nil without transparent_listen
	cos     *witness.Cosigner // nil without witnesses
	// closing is set when close starts: the cosigner's loop has stopped,
	// so the final checkpoint is cosigned by the store's hook itself.
	closing atomic.Bool
	// stopTraces flushes and stops the trace exporter (otel_endpoint).
	stopTraces func(context.Context) error

	// disk watches the free space of the log's volume.
	disk *diskspace.Watch

	// hup carries SIGHUP (Run subscribes it): reload the rules and the CA.
	hup chan os.Signal
	// rulesPoll is how often the rules file's modification time is checked.
	rulesPoll time.Duration
	// pruneEvery is how often bodies older than retention.bodies are pruned.
	pruneEvery time.Duration
}

// open builds the server from cfg up to bound listeners; nothing is served
// yet. On error, what was opened is closed again.
func open(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *server, err error) {
	s := &server{cfg: cfg, log: log, hup: make(chan os.Signal, 1), rulesPoll: 2 * time.Second, pruneEvery: time.Hour}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if s.certs, err = openCA(cfg, log); err != nil {
		return nil, err
	}
	keys, err := upstreamKeys(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkPolicyKeys(cfg, keys); err != nil {
		return nil, err
	}
	for _, p := range interceptedProviders(cfg) {
		if _, ok := keys.Key(p, ""); !ok {
			log.Warn("no upstream API key for an intercepted provider; its requests get 503 until then",
				"provider", p, "set", "upstream_keys "+string(p)+" or "+provider.For(p).KeyEnv())
		}
	}
	metrics := proxy.NewMetrics()
	if s.cos, err = newCosigner(cfg, log, metrics.WitnessFork); err != nil {
		return nil, err
	}
	s.store, err = store.Open(cfg.DB, store.Options{
		SigningKeyFile:     filepath.Join(cfg.DataDir, "log.key"),
		CheckpointEvery:    cfg.CheckpointEvery,
		CheckpointInterval: time.Duration(cfg.CheckpointInterval),
		CheckpointFile:     cfg.CheckpointFile,
		OnCheckpoint:       s.checkpointHook(postCheckpoint(ctx, cfg.CheckpointURL, log)),
		Logger:             log,
		OnCommit:           metrics.StoreCommitted,
		Progress:           progress.Tasks(os.Stderr, progress.Options{Quiet: cfg.Quiet, Unit: "records"}),
	})
	if err != nil {
		return nil, err
	}
	if s.fleet, err = startFleet(ctx, cfg, s.store, log); err != nil {
		return nil, err
	}
	metrics.ObserveLog(s.store)
	traces, stopTraces, err := tracing.Open(cfg.OtelEndpoint)
	if err != nil {
		return nil, err
	}
	s.stopTraces = stopTraces
	// Bound before first-run tokens are made, so that the lines printed
	// name the ports in use (picked by the kernel for ":0").
	if s.proxyLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		return nil, fmt.Errorf("admin_listen: %w", err)
	}
	s.adminLn = limitAdmin(s.adminLn)
	auth, runnerTok, err := newAuthenticator(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	admins, adminTok, err := adminTokens(cfg)
	if err != nil {
		return nil, err
	}
	if err := printFirstRun(cfg, s.proxyLn.Addr(), s.adminLn.Addr(), runnerTok, adminTok); err != nil {
		return nil, err
	}
	if err := loadRules(cfg.RulesFile, &s.rules); err != nil {
		return nil, err
	}

	tr, dial, upTLS, err := proxy.NewTransport(proxy.UpstreamOptions{CAFile: cfg.UpstreamCAFile, Addr: cfg.UpstreamAddr})
	if err != nil {
		return nil, err
	}
	// Budget counters start where the last run left them.
	counter := budget.NewLocal()
	if err := s.store.Budgets(counter.Seed); err != nil {
		return nil, err
	}
	s.disk = diskspace.New(filepath.Dir(cfg.DB), uint64(cfg.DiskReserve))
	observeDisk(metrics, s.disk)
	s.queue = approval.NewQueue(time.Duration(cfg.ApprovalTimeout))
	var exchanger proxy.Exchanger
	if len(cfg.OIDC) > 0 && s.certs.tokenHost {
		exchanger = auth
	}
	s.proxy, err = proxy.New(proxy.Options{
		Exchanger: exchanger,
		Intercept: cfg.Intercept, Passthrough: cfg.Passthrough, Ports: cfg.ConnectPorts,
		Certs: s.certs.Certs, Store: s.store, Auth: auth, Policies: cfg.Policies,
		Rules:     s.rules.Load,
		Approvals: s.queue, ApprovalMode: cfg.ApprovalMode,
		Providers: cfg.Providers,
		Keys:      keys,
		Upstream:  tr, UpstreamDial: dial, UpstreamTLS: upTLS,
		MaxBody: cfg.MaxBody, RecordBodyLimit: cfg.RecordBodyLimit,
		Holdback: cfg.StreamHoldback, WSMaxMessage: cfg.WSMaxMessage, MaxInflight: int(cfg.MaxInflight),
		MaxBufferedBytes: cfg.MaxBufferedBytes, LowDisk: s.disk.Low,
		MaxConns: fitConns(cfg.MaxConns, log), MaxConnsPerSource: cfg.MaxConnsPerSource,
		Refusals: proxy.RefusalLimits{PerMinute: cfg.RefusalRecordsPerMinute, Burst: cfg.RefusalBurst, Interval: time.Duration(cfg.RefusalSummaryInterval)},
		Logger:   log, Metrics: metrics, Tracing: traces, Budget: budget.NewMeter(counter, nil),
	})
	if err != nil {
		return nil, err
	}

	inbox, sessions, err := s.fleet.admin(ctx, s.queue, s.store, log)
	if err != nil {
		return nil, err
	}
	if !isLoopback(s.adminLn.Addr()) {
		log.Warn("admin listener is not on loopback: keep it behind a firewall", "addr", s.adminLn.Addr().String())
	}
	s.admin = &http.Server{
		Handler: web.NewHandler(web.Options{
			Health: healthWith(s.store.Healthy, s.cos), HealthDetail: s.fleet.healthDetail, Warnings: s.disk.Warnings,
			Metrics: metricsWith(s.fleet.metrics(metrics.WritePrometheus), s.cos), Logger: log,
			Sessions: sessions, Approvals: inbox, AdminTokens: admins,
			Verify:   query.ProofVerifier(s.store, s.store.PublicKey()),
			Snapshot: s.store.WriteSnapshot,
			Log:      tiles.Handler(s.store, log), LogPublic: cfg.LogPublic,
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if cfg.TransparentListen != "" {
		if s.transLn, err = net.Listen("tcp", cfg.TransparentListen); err != nil {
			return nil, fmt.Errorf("transparent_listen: %w", err)
		}
	}
	return s, nil
}

// serve runs the listeners and the background work (rules and CA reload,
// body pruning, the approval webhook) until ctx is done or the proxy
// listener fails. The reload and prune loops have stopped when it returns.
func (s *server) serve(ctx context.Context) error {
	cfg, log := s.cfg, s.log
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.pruneBodies(ctx) })
	wg.Go(func() { s.watchReload(ctx) })
	wg.Go(func() { s.disk.Run(ctx, diskEvery, log) })
	if s.cos != nil {
		wg.Go(func() { runCosigner(ctx, s.cos, s.store) })
	}
	if cfg.ApprovalWebhook != "" {
		hook := &approval.Webhook{URL: cfg.ApprovalWebhook, LinkBase: "http://" + cfg.AdminListen + "/approvals/", Logger: log}
		go hook.Run(ctx, s.queue)
	}
	go s.admin.Serve(s.adminLn)
	if s.transLn != nil {
		go func() {
			if err := s.proxy.ServeTransparent(ctx, s.transLn, proxy.TransparentOptions{DstCheck: cfg.TransparentDstCheck}); err != nil {
				log.Error("transparent listener stopped", "err", err)
			}
		}()
		log.Info("transparent listener", "addr", s.transLn.Addr().String(), "dst_check", cfg.TransparentDstCheck)
	}
	log.Info("sessctl serving", "listen", s.proxyLn.Addr().String(), "admin", s.adminLn.Addr().String(),
		"intercept", cfg.Intercept, "passthrough", cfg.Passthrough, "db", cfg.DB, "ca", cfg.CADir)
	return s.proxy.ServeExplicit(ctx, s.proxyLn)
}

// close releases what open made, in reverse order. It is safe on a server
// that open left half built.
func (s *server) close() {
	s.closing.Store(true)
	if s.admin != nil {
		s.admin.Close()
	}
	for _, l := range []net.Listener{s.transLn, s.adminLn, s.proxyLn} {
		if l != nil {
			l.Close()
		}
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.fleet != nil {
		s.fleet.close()
	}
	if s.stopTraces != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.stopTraces(ctx); err != nil {
			s.log.Warn("flushing traces", "err", err)
		}
		cancel()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Error("closing the store", "err", err)
		}
	}
	if s.certs != nil {
		s.certs.close()
	}
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// caSource is where the certificates presented to runners come from.
type caSource struct {
	proxy.Certs
	reload    func() error // on SIGHUP, after `sessctl ca promote`
	close     func()
	tokenHost bool // may mint for proxy.TokenHost
}

// openCA opens the CA directory: a step-ca enrollment (`ca enroll`), or
// sessctl's own CA, created on first run. A CA created here may also mint
// for proxy.TokenHost, where runners exchange OIDC tokens.
func openCA(cfg *config.Config, log *slog.Logger) (*caSource, error) {
	hosts := append(slices.Clone(cfg.Intercept), proxy.TokenHost)
	opts := ca.LoadOptions{Hosts: cfg.Intercept, LeafValidity: time.Duration(cfg.LeafValidity), Logger: log}
	if certs, closer, ok, err := openStepCA(cfg.CADir, opts); ok || err != nil {
		if err != nil {
			return nil, err
		}
		log.Info("using the step-ca enrollment", "dir", cfg.CADir)
		reload := func() error { return nil }
		if r, ok := certs.(interface{ Reload() error }); ok {
			reload = r.Reload
		}
		return &caSource{Certs: certs, reload: reload, close: func() { closer.Close() }}, nil
	}
	if _, err := os.Stat(filepath.Join(cfg.CADir, "ca.crt")); errors.Is(err, fs.ErrNotExist) {
		if err := ca.Init(cfg.CADir, ca.InitOptions{Hosts: hosts}); err != nil {
			return nil, err
		}
		log.Info("created a new CA: runners must trust it", "cert", filepath.Join(cfg.CADir, "ca.crt"))
	}
	src := &caSource{close: func() {}}
	withToken := opts
	withToken.Hosts = hosts
	a, err := ca.Load(cfg.CADir, withToken)
	if err == nil {
		src.tokenHost = true
	} else {
		// A CA whose name constraints leave out the token host (made by
		// `ca init` for the intercepted hosts only).
		if a, err = ca.Load(cfg.CADir, opts); err != nil {
			return nil, err
		}
		if len(cfg.OIDC) > 0 {
			log.Warn("the CA cannot mint for "+proxy.TokenHost+": OIDC token exchange is off", "ca", cfg.CADir)
		}
	}
	src.Certs, src.reload = a, a.Reload
	return src, nil
}

// upstreamKeys reads the real API keys, by provider. A provider's default
// key is the upstream_keys entry named after it (for OpenAI also
// upstream_key_file), else the process's environment variable for it
// (OPENAI_API_KEY, ANTHROPIC_API_KEY, AZURE_OPENAI_API_KEY). Named keys
// are read from their upstream_keys entries (see config.KeyName).
func upstreamKeys(cfg *config.Config) (provider.Keys, error) {
	keys := provider.Keys{}
	read := func(path string) (string, error) {
		if err := keyfile.CheckPrivate(path); err != nil {
			return "", fmt.Errorf("upstream key: %w", err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("upstream key: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", fmt.Errorf("upstream key file %s is empty", path)
		}
		return k, nil
	}
	if cfg.UpstreamKeyFile != "" {
		k, err := read(cfg.UpstreamKeyFile)
		if err != nil {
			return nil, err
		}
		keys.Set(provider.OpenAI, "", k)
	}
	for entry, path := range cfg.UpstreamKeys {
		p, name, err := config.KeyName(entry)
		if err != nil {
			return nil, fmt.Errorf("upstream_keys: %w", err)
		}
		k, err := read(path)
		if err != nil {
			return nil, fmt.Errorf("upstream_keys %s: %w", entry, err)
		}
		keys.Set(p, name, k)
	}
	for _, p := range provider.Names() {
		if _, ok := keys.Key(p, ""); !ok {
			if k := strings.TrimSpace(os.Getenv(provider.For(p).KeyEnv())); k != "" {
				keys.Set(p, "", k)
			}
		}
	}
	return keys, nil
}

// interceptedProviders lists the providers of the intercepted hosts.
func interceptedProviders(cfg *config.Config) []provider.Name {
	var out []provider.Name
	for _, h := range cfg.Intercept {
		if p, ok := provider.ForHost(h, cfg.Providers); ok && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// checkPolicyKeys refuses a policy whose key no intercepted provider has.
// A policy applies to every intercepted host; at request time its key is
// looked up under the provider of the request's host only, and a request
// to a provider lacking it is refused (503), never sent another
// provider's key.
func checkPolicyKeys(cfg *config.Config, keys provider.Keys) error {
	provs := interceptedProviders(cfg)
	for _, pol := range cfg.Policies {
		if pol.Key == "" {
			continue
		}
		if !slices.ContainsFunc(provs, func(p provider.Name) bool { _, ok := keys.Key(p, pol.Key); return ok }) {
			return fmt.Errorf("policy %s: key %q is not among upstream_keys for any intercepted provider (%v)", pol.Name, pol.Key, provs)
		}
	}
	return nil
}
