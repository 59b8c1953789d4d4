package main

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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/internal/keyfile"
	"github.com/sessctl/sessctl/proxy"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/web"
)

func serveCommand() *cli.Command {
	flags := []cli.Flag{&cli.StringFlag{Name: "config", Usage: "YAML config file (keys as in sessctl.example.yaml)", EnvVars: []string{"SESSCTL_CONFIG"}}}
	for _, k := range config.Keys() {
		env := []string{"SESSCTL_" + strings.ToUpper(k.Name)}
		if k.List {
			flags = append(flags, &cli.StringSliceFlag{Name: k.Name, Usage: k.Usage, EnvVars: env})
		} else {
			flags = append(flags, &cli.StringFlag{Name: k.Name, Usage: k.Usage, EnvVars: env})
		}
	}
	return &cli.Command{
		Name:  "serve",
		Usage: "run the proxy (embedded defaults; CA, database and a runner token are created on first run)",
		Flags: flags,
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := serve(ctx, cfg, newLogger(cfg)); err != nil {
				return cli.Exit("sessctl: "+err.Error(), 1)
			}
			return nil
		},
	}
}

// loadConfig layers the defaults, the config file, then flags and
// SESSCTL_* environment variables.
func loadConfig(c *cli.Context) (*config.Config, error) {
	cfg := config.Default()
	if path := c.String("config"); path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, err
		}
	}
	for _, k := range config.Keys() {
		if !c.IsSet(k.Name) {
			continue
		}
		vals := []string{c.String(k.Name)}
		if k.List {
			vals = c.StringSlice(k.Name)
		}
		if err := cfg.Set(k.Name, vals); err != nil {
			return nil, err
		}
	}
	if err := cfg.Resolve(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// serve wires the parts together and runs until ctx is done.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	certs, err := openCA(cfg, log)
	if err != nil {
		return err
	}
	defer certs.close()
	keys, err := upstreamKeys(cfg)
	if err != nil {
		return err
	}
	for _, p := range cfg.Policies {
		if p.Key != "" && keys[p.Key] == "" {
			return fmt.Errorf("policy %s: key %q is not among upstream_keys", p.Name, p.Key)
		}
	}
	if keys[""] == "" {
		log.Warn("no upstream API key: set upstream_key_file or OPENAI_API_KEY; intercepted requests get 503 until then")
	}
	st, err := store.Open(cfg.DB, store.Options{
		SigningKeyFile:     filepath.Join(cfg.DataDir, "log.key"),
		CheckpointEvery:    cfg.CheckpointEvery,
		CheckpointInterval: time.Duration(cfg.CheckpointInterval),
		CheckpointFile:     cfg.CheckpointFile,
		OnCheckpoint:       postCheckpoint(ctx, cfg.CheckpointURL, log),
		Logger:             log,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing the store", "err", err)
		}
	}()
	go pruneBodies(ctx, st, time.Duration(cfg.Retention.Bodies), log)
	// Bound before first-run tokens are made, so that the lines printed
	// name the ports in use (picked by the kernel for ":0").
	pl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer pl.Close()
	al, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin_listen: %w", err)
	}
	defer al.Close()
	auth, runnerTok, err := newAuthenticator(ctx, cfg, log)
	if err != nil {
		return err
	}
	admins, adminTok, err := adminTokens(cfg)
	if err != nil {
		return err
	}
	if err := printFirstRun(cfg, pl.Addr(), al.Addr(), runnerTok, adminTok); err != nil {
		return err
	}
	var ruleSet atomic.Pointer[rules.Set]
	if err := loadRules(cfg.RulesFile, &ruleSet); err != nil {
		return err
	}
	go watchReload(ctx, cfg.RulesFile, &ruleSet, certs.reload, log)

	tr, dial, upTLS, err := proxy.NewTransport(proxy.UpstreamOptions{CAFile: cfg.UpstreamCAFile, Addr: cfg.UpstreamAddr})
	if err != nil {
		return err
	}
	metrics := proxy.NewMetrics()
	queue := approval.NewQueue(time.Duration(cfg.ApprovalTimeout))
	if cfg.ApprovalWebhook != "" {
		hook := &approval.Webhook{URL: cfg.ApprovalWebhook, LinkBase: "http://" + cfg.AdminListen + "/approvals/", Logger: log}
		go hook.Run(ctx, queue)
	}
	var exchanger proxy.Exchanger
	if len(cfg.OIDC) > 0 && certs.tokenHost {
		exchanger = auth
	}
	px, err := proxy.New(proxy.Options{
		Exchanger: exchanger,
		Intercept: cfg.Intercept, Passthrough: cfg.Passthrough, Ports: cfg.ConnectPorts,
		Certs: certs.Certs, Store: st, Auth: auth, Policies: cfg.Policies,
		Rules:     ruleSet.Load,
		Approvals: queue, ApprovalMode: cfg.ApprovalMode,
		Keys:     keys,
		Upstream: tr, UpstreamDial: dial, UpstreamTLS: upTLS,
		MaxBody: cfg.MaxBody, RecordBodyLimit: cfg.RecordBodyLimit,
		Holdback: cfg.StreamHoldback, WSMaxMessage: cfg.WSMaxMessage, MaxInflight: int(cfg.MaxInflight),
		Logger: log, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	defer px.Close()

	if !isLoopback(al.Addr()) {
		log.Warn("admin listener is not on loopback: keep it behind a firewall", "addr", al.Addr().String())
	}
	admin := &http.Server{
		Handler: web.NewHandler(web.Options{
			Health: st.Healthy, Metrics: metrics.WritePrometheus, Logger: log,
			Sessions: st, Approvals: queue, AdminTokens: admins,
			Verify:   web.ProofVerifier(st, st.PublicKey()),
			Snapshot: st.WriteSnapshot,
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go admin.Serve(al)
	defer admin.Close()
	if cfg.TransparentListen != "" {
		tl, err := net.Listen("tcp", cfg.TransparentListen)
		if err != nil {
			return fmt.Errorf("transparent_listen: %w", err)
		}
		go func() {
			if err := px.ServeTransparent(ctx, tl, proxy.TransparentOptions{DstCheck: cfg.TransparentDstCheck}); err != nil {
				log.Error("transparent listener stopped", "err", err)
			}
		}()
		log.Info("transparent listener", "addr", tl.Addr().String(), "dst_check", cfg.TransparentDstCheck)
	}
	log.Info("sessctl serving", "listen", pl.Addr().String(), "admin", al.Addr().String(),
		"intercept", cfg.Intercept, "passthrough", cfg.Passthrough, "db", cfg.DB, "ca", cfg.CADir)
	return px.ServeExplicit(ctx, pl)
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

// upstreamKeys reads the real API keys: the default one from
// upstream_key_file or the process's OPENAI_API_KEY, and the named ones.
func upstreamKeys(cfg *config.Config) (map[string]string, error) {
	keys := map[string]string{}
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
		keys[""] = k
	} else {
		keys[""] = strings.TrimSpace(os.Getenv("OPENAI_API_KEY"))
	}
	for name, path := range cfg.UpstreamKeys {
		k, err := read(path)
		if err != nil {
			return nil, fmt.Errorf("upstream_keys %s: %w", name, err)
		}
		keys[name] = k
	}
	return keys, nil
}
