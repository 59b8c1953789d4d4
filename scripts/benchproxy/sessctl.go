package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessctl/sessctl/identity"
)

// tokens are the credentials the harness gives sessctl, as an operator
// would (SESSCTL_RUNNERS and SESSCTL_ADMIN_TOKENS: NAME:SHA256), so that
// no first-run token is created: a runner token for the clients and an
// admin token for profiles from the admin listener.
type tokens struct {
	runner, runnerHash string
	admin, adminHash   string
}

// newTokens makes a fresh runner token and admin token.
func newTokens() (tokens, error) {
	r, err := identity.NewRunnerToken()
	if err != nil {
		return tokens{}, err
	}
	a, err := identity.NewRunnerToken()
	if err != nil {
		return tokens{}, err
	}
	return tokens{runner: r, runnerHash: identity.HashToken(r), admin: a, adminHash: identity.HashToken(a)}, nil
}

// env is the environment entries that configure the tokens.
func (t tokens) env() []string {
	return []string{"SESSCTL_RUNNERS=bench:" + t.runnerHash, "SESSCTL_ADMIN_TOKENS=bench:" + t.adminHash}
}

// startSessctl runs `sessctl serve` on embedded defaults (recording on,
// built-in rules, fsync on), pointed at the stand-in, with a data
// directory of its own: a fresh copy of seed when seed is set (a
// prefilled log), else empty. It returns the time the copy took.
//
// With tmpfs set, the data directory (CA, log) is put on /dev/shm, where
// fsync returns at once: a diagnostic of what durability costs, not a
// supported configuration. The path is then named sessctl-tmpfs.
func startSessctl(ctx context.Context, bin, dir string, tmpfs bool, up *upstream, tok tokens, seed string) (*path, time.Duration, error) {
	name := "sessctl"
	if tmpfs {
		name = "sessctl-tmpfs"
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, 0, fmt.Errorf("%s: %w (run make build)", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	data, tmp := filepath.Join(dir, "data"), ""
	if tmpfs {
		shm, err := os.MkdirTemp("/dev/shm", "benchproxy-sessctl-")
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", name, err)
		}
		data, tmp = filepath.Join(shm, "data"), shm
	}
	var took time.Duration
	if seed != "" {
		start := time.Now()
		if err := copyDataDir(ctx, seed, data); err != nil {
			os.RemoveAll(tmp)
			return nil, 0, fmt.Errorf("%s: copying the prefilled log: %w", name, err)
		}
		took = time.Since(start)
	}
	p, err := startSessctlDir(ctx, bin, dir, data, name, up.Addr, up.CAFile, tok)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, 0, err
	}
	p.tmp = tmp
	return p, took, nil
}

// startSessctlDir runs `sessctl serve` on data and waits until it
// listens (a large log may take a while to open). Its log goes to
// dir/serve.log.
func startSessctlDir(ctx context.Context, bin, dir, data, name, upAddr, upCA string, tok tokens) (*path, error) {
	listen, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	admin, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	args := []string{"serve", "--data_dir", data, "--listen", listen, "--admin_listen", admin, "--upstream_addr", upAddr}
	if upCA != "" {
		args = append(args, "--upstream_ca_file", upCA)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(cleanEnv(), "OPENAI_API_KEY="+realKey), tok.env()...)
	p := &path{Name: name, bin: bin, dataDir: data, adminURL: "http://" + admin, adminToken: tok.admin}
	if p.proc, err = startChild(cmd, filepath.Join(dir, "serve.log"), nil); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.PID = p.proc.PID()
	if err := waitFor(ctx, 10*time.Minute, func() bool { return canDial(listen) || !p.proc.running() }); err != nil || !p.proc.running() {
		p.Stop()
		return nil, fmt.Errorf("%s did not start (log in %s): %v", name, dir, err)
	}
	roots, err := loadPool(filepath.Join(data, "ca", "ca.crt"))
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.Base = "https://" + apiHost
	p.Credential = tok.runner
	p.Client = newClient(&url.URL{Scheme: "http", Host: listen}, roots, nil)
	return p, nil
}

// verify runs `sessctl verify` on the stopped proxy's log and returns its
// first line.
func (p *path) verify() string {
	out, err := exec.Command(p.bin, "verify", "--db", filepath.Join(p.dataDir, "sessions.db")).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		return fmt.Sprintf("%s (%v)", line, err)
	}
	return line
}
