package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// path is one way for a client to reach the stand-in.
type path struct {
	// Name is direct, mitmproxy or sessctl.
	Name string
	// PID is the proxy process (0 for the direct path).
	PID int
	// Base is the URL prefix requests are sent to; Host, when set,
	// replaces the Host header.
	Base, Host string
	// Credential is the bearer credential the client presents.
	Credential string
	// Client is configured to trust what this path presents.
	Client *http.Client

	cmd     *exec.Cmd
	logFile *os.File
	dataDir string
	bin     string
	tmp     string // removed on Stop
}

// newClient returns an HTTP/1.1 client (what the OpenAI SDKs speak by
// default) with keep-alive connections for up to 64 concurrent requests.
func newClient(proxy *url.URL, roots *x509.CertPool, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, ServerName: apiHost},
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         dial,
	}
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy)
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// directPath dials the stand-in itself: the physical limit.
func directPath(up *upstream) *path {
	d := &net.Dialer{}
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, up.Addr)
	}
	return &path{
		Name:       "direct",
		Base:       "https://" + apiHost,
		Credential: realKey,
		Client:     newClient(nil, up.CAs, dial),
	}
}

// startMitmproxy runs mitmdump with no addons, streaming bodies
// (stream_large_bodies=1: without it mitmproxy holds SSE events back) and
// trusting the stand-in's CA upstream.
//
// mitmproxy has no per-host address override, so the client sends CONNECT
// for the stand-in's own address (127.0.0.1:port) while its TLS SNI and
// Host header say api.openai.com, as curl --connect-to does: mitmproxy
// mints its leaf for the SNI name, dials the CONNECT target and verifies the
// stand-in's certificate for api.openai.com. The client side is otherwise
// the same as for sessctl: one CONNECT per keep-alive connection, TLS
// terminated and re-originated, HTTP/1.1.
func startMitmproxy(ctx context.Context, bin, dir string, up *upstream) (*path, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mitmproxy: %w", err)
	}
	listen, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("mitmproxy: %w", err)
	}
	host, port, _ := net.SplitHostPort(listen)
	p := &path{Name: "mitmproxy", bin: bin}
	p.cmd = exec.Command(bin, "-q", "--listen-host", host, "--listen-port", port,
		"--set", "confdir="+dir,
		"--set", "stream_large_bodies=1",
		"--set", "ssl_verify_upstream_trusted_ca="+up.CAFile)
	p.cmd.Env = cleanEnv()
	if err := p.startLogged(filepath.Join(dir, "mitmdump.log")); err != nil {
		return nil, fmt.Errorf("mitmproxy: %w", err)
	}
	caFile := filepath.Join(dir, "mitmproxy-ca-cert.pem")
	if err := waitFor(ctx, 30*time.Second, func() bool {
		_, err := os.Stat(caFile)
		return err == nil && canDial(listen)
	}); err != nil {
		p.Stop()
		return nil, fmt.Errorf("mitmproxy did not start (log in %s): %w", dir, err)
	}
	roots, err := loadPool(caFile)
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("mitmproxy: %w", err)
	}
	p.Base = "https://" + up.Addr
	p.Host = apiHost
	p.Credential = realKey
	p.Client = newClient(&url.URL{Scheme: "http", Host: listen}, roots, nil)
	return p, nil
}

// startSessctl runs `sessctl serve` on embedded defaults (recording on,
// built-in rules, fsync on) with a fresh data directory, pointed at the
// stand-in, and reads the first-run runner token it prints.
//
// With tmpfs set, the data directory (CA, log) is put on /dev/shm, where
// fsync returns at once: a diagnostic of what durability costs, not a
// supported configuration. The path is then named sessctl-tmpfs.
func startSessctl(ctx context.Context, bin, dir string, tmpfs bool, up *upstream) (*path, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("sessctl: %w (run make build)", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sessctl: %w", err)
	}
	listen, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("sessctl: %w", err)
	}
	admin, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("sessctl: %w", err)
	}
	data := filepath.Join(dir, "data")
	p := &path{Name: "sessctl", bin: bin, dataDir: data}
	if tmpfs {
		shm, err := os.MkdirTemp("/dev/shm", "benchproxy-sessctl-")
		if err != nil {
			return nil, fmt.Errorf("sessctl-tmpfs: %w", err)
		}
		p.Name, p.tmp, data, p.dataDir = "sessctl-tmpfs", shm, filepath.Join(shm, "data"), filepath.Join(shm, "data")
	}
	p.cmd = exec.Command(bin, "serve", "--data_dir", data, "--listen", listen, "--admin_listen", admin,
		"--upstream_addr", up.Addr, "--upstream_ca_file", up.CAFile)
	p.cmd.Env = append(cleanEnv(), "OPENAI_API_KEY="+realKey)
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return nil, fmt.Errorf("sessctl: %w", err)
	}
	p.logFile = logf
	p.cmd.Stderr = logf
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("sessctl: %w", err)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sessctl: %w", err)
	}
	p.PID = p.cmd.Process.Pid
	token := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if tok, ok := strings.CutPrefix(strings.TrimSpace(line), "export OPENAI_API_KEY="); ok {
				select {
				case token <- tok:
				default:
				}
				line = "export OPENAI_API_KEY=<runner token>"
			}
			fmt.Fprintln(logf, line)
		}
	}()
	select {
	case p.Credential = <-token:
	case <-time.After(30 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("sessctl printed no runner token within 30s (log in %s)", dir)
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
	if err := waitFor(ctx, 15*time.Second, func() bool { return canDial(listen) }); err != nil {
		p.Stop()
		return nil, fmt.Errorf("sessctl did not listen (log in %s): %w", dir, err)
	}
	roots, err := loadPool(filepath.Join(data, "ca", "ca.crt"))
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("sessctl: %w", err)
	}
	p.Base = "https://" + apiHost
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

func (p *path) startLogged(logPath string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	p.logFile = f
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return err
	}
	p.PID = p.cmd.Process.Pid
	return nil
}

// Stop ends the proxy process (SIGTERM, then SIGKILL after 15 s).
func (p *path) Stop() {
	if p.Client != nil {
		p.Client.CloseIdleConnections()
	}
	if p.tmp != "" {
		defer os.RemoveAll(p.tmp)
	}
	if p.cmd == nil || p.cmd.Process == nil || p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	if p.logFile != nil {
		p.logFile.Close()
	}
}

// cleanEnv is the environment for proxies: no proxy settings of our own.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "OPENAI_API_KEY":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func canDial(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func waitFor(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}

// readAllCount reads r to its end and returns the byte count.
func readAllCount(r io.Reader) (int64, error) {
	n, err := io.Copy(io.Discard, r)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}
