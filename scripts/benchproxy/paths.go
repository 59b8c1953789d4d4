package main

import (
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
	"time"
)

// path is one way for a client to reach the stand-in.
type path struct {
	// Name is direct, bare-goproxy, mitmproxy, sessctl or sessctl-tmpfs.
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

	proc    *child
	dataDir string
	bin     string
	tmp     string // removed on Stop
	// adminURL and adminToken reach sessctl's admin listener (profiles).
	adminURL, adminToken string
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
	cmd := exec.Command(bin, "-q", "--listen-host", host, "--listen-port", port,
		"--set", "confdir="+dir,
		"--set", "stream_large_bodies=1",
		"--set", "ssl_verify_upstream_trusted_ca="+up.CAFile)
	cmd.Env = cleanEnv()
	if p.proc, err = startChild(cmd, filepath.Join(dir, "mitmdump.log"), nil); err != nil {
		return nil, fmt.Errorf("mitmproxy: %w", err)
	}
	p.PID = p.proc.PID()
	caFile := filepath.Join(dir, "mitmproxy-ca-cert.pem")
	if err := waitFor(ctx, 30*time.Second, func() bool {
		_, err := os.Stat(caFile)
		return err == nil && canDial(listen) || !p.proc.running()
	}); err != nil || !p.proc.running() {
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

// Stop ends the proxy process (SIGTERM, then SIGKILL after 15 s) and
// removes its tmpfs directory, if any.
func (p *path) Stop() {
	if p.Client != nil {
		p.Client.CloseIdleConnections()
	}
	if p.tmp != "" {
		defer os.RemoveAll(p.tmp)
	}
	p.proc.Stop()
}
