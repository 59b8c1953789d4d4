package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/sessctl/sessctl/provider"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/keyfile"
	"github.com/sessctl/sessctl/internal/runnerenv"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

// newAuthenticator builds the runner authenticator from the config and the
// runners file. On first run, with no runner and no OIDC issuer, it creates
// one runner token and returns it in clear, to be printed once (by
// printFirstRun, when the listener's address is known), so that a newcomer
// can try the proxy at once.
func newAuthenticator(ctx context.Context, cfg *config.Config, log *slog.Logger) (*identity.Authenticator, string, error) {
	runners, tok, err := loadTokens(cfg.RunnersFile, cfg.Runners, "runner-1", len(cfg.OIDC) == 0)
	if err != nil {
		return nil, "", err
	}
	key, err := fleetSessionKey(cfg)
	if err != nil {
		return nil, "", err
	}
	auth, err := identity.New(ctx, identity.Config{
		Runners: runners, OIDC: cfg.OIDC, SessionTokenTTL: time.Duration(cfg.SessionTokenTTL),
		SessionKey: key, Logger: log,
	})
	return auth, tok, err
}

// printFirstRun prints, once, the tokens created on first run and the
// lines a runner needs, with the addresses the listeners are bound to
// (the port picked for a ":0") and the CA's absolute path.
func printFirstRun(cfg *config.Config, proxyAddr, adminAddr net.Addr, runnerTok, adminTok string) error {
	if runnerTok != "" {
		env, err := runnerenv.New(cfg.Listen, proxyAddr, runnerTok, filepath.Join(cfg.CADir, "ca.crt"))
		if err != nil {
			return err
		}
		for _, h := range cfg.Intercept {
			if p, ok := provider.ForHost(h, cfg.Providers); ok && p == provider.Anthropic {
				env.ExtraKeyVars = []string{"ANTHROPIC_API_KEY"} // Claude Code, the Anthropic SDKs
				break
			}
		}
		fmt.Fprintf(os.Stdout, "\nsessctl: first run: created runner %q (its token is shown once; only its hash is kept, in %s).\nOn the runner:\n", "runner-1", cfg.RunnersFile)
		env.WriteExports(os.Stdout, "  ")
		fmt.Fprintln(os.Stdout)
	}
	if adminTok != "" {
		adminURL, err := runnerenv.URL(cfg.AdminListen, adminAddr)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, `sessctl: first run: created admin token %q for the admin API and UI at %s/ (shown once; its hash is in %s):
  export SESSCTL_ADMIN_URL=%s SESSCTL_ADMIN_TOKEN=%s

`, "admin", adminURL, cfg.AdminTokensFile, adminURL, adminTok)
	}
	return nil
}

// adminTokens returns the admin tokens from the config and the admin
// tokens file, creating a first one when there are none (returned in
// clear, to be printed once), so that the admin UI is usable and never
// open.
func adminTokens(cfg *config.Config) ([]identity.Runner, string, error) {
	return loadTokens(cfg.AdminTokensFile, cfg.AdminTokens, "admin", true)
}

// loadTokens reads a tokens file on top of the configured tokens. When
// there are none and create is set, it makes one named name, stores its
// hash in the file, and returns the token in clear to be shown once.
func loadTokens(file string, configured []identity.Runner, name string, create bool) ([]identity.Runner, string, error) {
	fromFile, err := identity.LoadRunnersFile(file)
	if err != nil {
		return nil, "", err
	}
	all := append(slices.Clone(configured), fromFile...)
	if len(all) > 0 || !create {
		return all, "", nil
	}
	tok, err := identity.NewRunnerToken()
	if err != nil {
		return nil, "", err
	}
	r := identity.Runner{Name: name, TokenSHA256: identity.HashToken(tok)}
	if err := identity.AddRunner(file, r); err != nil {
		return nil, "", err
	}
	return []identity.Runner{r}, tok, nil
}

// sessionKey loads the key that signs session tokens, creating it (0600)
// on first run so that tokens survive a restart.
func sessionKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := identity.NewSessionKey()
		if err != nil {
			return nil, err
		}
		if err := keyfile.WriteAtomic(path, k, 0o600); err != nil {
			return nil, fmt.Errorf("session key: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	if err := keyfile.CheckPrivate(path); err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	return b, nil
}

// loadRules loads the rules file (or the built-in ruleset) into cur.
func loadRules(path string, cur *atomic.Pointer[rules.Set]) error {
	if path == "" {
		cur.Store(rules.Default())
		return nil
	}
	set, err := rules.Load(path)
	if err != nil {
		return err
	}
	cur.Store(set)
	return nil
}

// watchReload reloads the rules file on SIGHUP (s.hup) and when it
// changes, and the CA on SIGHUP (after `sessctl ca promote`). A bad rules
// file or CA is logged and what is in force stays.
func (s *server) watchReload(ctx context.Context) {
	rulesPath, log := s.cfg.RulesFile, s.log
	tick := time.NewTicker(s.rulesPoll)
	defer tick.Stop()
	last := modTime(rulesPath)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.hup:
			if err := s.certs.reload(); err != nil {
				log.Error("CA reload rejected; the current CA stays in force", "err", err)
			} else {
				log.Info("CA reloaded")
			}
		case <-tick.C:
			m := modTime(rulesPath)
			if rulesPath == "" || m.Equal(last) {
				continue
			}
			last = m
		}
		if rulesPath == "" {
			continue
		}
		if err := loadRules(rulesPath, &s.rules); err != nil {
			log.Error("rules reload rejected; the previous rules stay in force", "file", rulesPath, "err", err)
			continue
		}
		log.Info("rules reloaded", "file", rulesPath, "rules", len(s.rules.Load().Rules()))
	}
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// postCheckpoint returns the store's checkpoint hook: each signed
// checkpoint is POSTed to url in the background (nil when url is empty).
func postCheckpoint(ctx context.Context, url string, log *slog.Logger) func([]byte) {
	if url == "" {
		return nil
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	return func(signed []byte) {
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(signed))
			if err != nil {
				log.Error("checkpoint_url", "err", err)
				return
			}
			req.Header.Set("Content-Type", "text/plain; charset=utf-8")
			resp, err := client.Do(req)
			if err != nil {
				log.Warn("posting checkpoint failed", "err", err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				log.Warn("posting checkpoint refused", "status", resp.StatusCode)
			}
		}()
	}
}

// pruneBodies deletes bodies older than retention.bodies, at start and
// then every s.pruneEvery (an hour); the records, chain and proofs stay.
// A retention of 0 keeps bodies for ever.
func (s *server) pruneBodies(ctx context.Context) {
	keep := time.Duration(s.cfg.Retention.Bodies)
	if keep <= 0 {
		return
	}
	tick := time.NewTicker(s.pruneEvery)
	defer tick.Stop()
	for {
		var res store.PruneResult
		var err error
		if shipped := s.fleet.shipped(); shipped != nil {
			// Only bodies already shipped to central_dsn.
			res, err = s.store.PruneBelow(ctx, time.Now().Add(-keep), shipped())
		} else {
			res, err = s.store.Prune(ctx, time.Now().Add(-keep))
		}
		if err != nil {
			s.log.Error("pruning bodies", "err", err)
		} else {
			s.log.Debug("pruned bodies", "result", fmt.Sprintf("%+v", res))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
