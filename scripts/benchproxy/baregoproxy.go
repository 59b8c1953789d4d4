package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// The bare-goproxy path is the floor of the library sessctl is built on:
// github.com/elazarl/goproxy intercepting api.openai.com with a CA of its
// own and replacing the Authorization header with the real key, and
// nothing else (no recording, no rules, no identity, compression passed
// through as it comes). Its upstream transport is configured as sessctl's
// (keep-alive, HTTP/2 when offered, TLS verified against the stand-in's
// CA), so that the difference between the two rows is what sessctl adds.
// It runs as a process of its own (bin/benchproxy -bare-goproxy) so that
// its CPU and memory are measured like the other proxies'.

// bareOptions configure the bare goproxy.
type bareOptions struct {
	// UpstreamAddr is where api.openai.com is dialled (the stand-in);
	// UpstreamCA its CA file.
	UpstreamAddr, UpstreamCA string
	// Key is the real API key put in every request.
	Key string
}

// bareProxy is a running bare goproxy.
type bareProxy struct {
	Addr string
	// CAPEM is its CA certificate.
	CAPEM []byte
	srv   *http.Server
}

// Close stops it.
func (b *bareProxy) Close() error { return b.srv.Close() }

// newBareGoproxy returns the goproxy handler and its CA certificate (PEM).
func newBareGoproxy(o bareOptions) (http.Handler, []byte, error) {
	ca, caPEM, err := newBareCA()
	if err != nil {
		return nil, nil, fmt.Errorf("bare goproxy: CA: %w", err)
	}
	roots := x509.NewCertPool()
	b, err := os.ReadFile(o.UpstreamCA)
	if err != nil {
		return nil, nil, fmt.Errorf("bare goproxy: %w", err)
	}
	if !roots.AppendCertsFromPEM(b) {
		return nil, nil, fmt.Errorf("bare goproxy: %s: no PEM certificate", o.UpstreamCA)
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	gp.CertStore = &certCache{}
	// Accept-Encoding goes upstream as the client sent it, and the
	// answer comes back as the upstream sent it.
	gp.KeepAcceptEncoding = true
	gp.Tr = &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, o.UpstreamAddr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
	}
	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(ca)}
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if host == apiHost+":443" {
			return mitm, host
		}
		return goproxy.RejectConnect, host
	})
	gp.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		r.Header.Set("Authorization", "Bearer "+o.Key)
		return r, nil
	})
	return gp, caPEM, nil
}

// startBareGoproxy serves the bare goproxy on listen in this process.
func startBareGoproxy(listen string, o bareOptions) (*bareProxy, error) {
	h, caPEM, err := newBareGoproxy(o)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("bare goproxy: %w", err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	return &bareProxy{Addr: l.Addr().String(), CAPEM: caPEM, srv: srv}, nil
}

// serveBareGoproxy is the -bare-goproxy mode: it writes its CA to
// dir/ca.crt, prints listen and ca_file on one line once it listens, and
// serves until interrupted. The real key comes from OPENAI_API_KEY.
func serveBareGoproxy(ctx context.Context, listen, dir string, o bareOptions) error {
	if o.Key == "" {
		return fmt.Errorf("bare goproxy: OPENAI_API_KEY is not set")
	}
	b, err := startBareGoproxy(listen, o)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bare goproxy: %w", err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, b.CAPEM, 0o644); err != nil {
		return fmt.Errorf("bare goproxy: %w", err)
	}
	fmt.Printf("listen=%s ca_file=%s\n", b.Addr, caFile)
	<-ctx.Done()
	return nil
}

// startBarePath runs this binary in -bare-goproxy mode pointed at the
// stand-in, and returns the path through it. Clients present a dummy
// credential: only the key swap lets them through.
func startBarePath(ctx context.Context, o options, dir string, up *upstream) (*path, error) {
	self, err := o.executable()
	if err != nil {
		return nil, fmt.Errorf("bare-goproxy: %w", err)
	}
	listen, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("bare-goproxy: %w", err)
	}
	cmd := exec.Command(self, "-bare-goproxy", "-listen", listen, "-work", dir,
		"-upstream-addr", up.Addr, "-upstream-ca", up.CAFile)
	cmd.Env = append(cleanEnv(), "OPENAI_API_KEY="+realKey)
	proc, kv, err := startAnnouncing(ctx, cmd, filepath.Join(dir, "bare-goproxy.log"), 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("bare-goproxy: %w", err)
	}
	roots, err := loadPool(kv["ca_file"])
	if err != nil {
		proc.Stop()
		return nil, fmt.Errorf("bare-goproxy: %w", err)
	}
	return &path{
		Name:       "bare-goproxy",
		PID:        proc.PID(),
		Base:       "https://" + apiHost,
		Credential: dummyCredential,
		Client:     newClient(&url.URL{Scheme: "http", Host: kv["listen"]}, roots, nil),
		proc:       proc,
	}, nil
}

// dummyCredential is what a runner presents to the bare goproxy.
const dummyCredential = "sk-runner-dummy-not-the-key"

// newBareCA returns a fresh CA for the bare goproxy (ECDSA P-256, as
// sessctl's), and its PEM.
func newBareCA() (*tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "benchproxy bare goproxy CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// certCache is goproxy's leaf cache: one leaf per host name, minted once.
type certCache struct {
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

// Fetch returns the leaf for host, minting it with gen the first time.
func (c *certCache) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert, ok := c.certs[host]; ok {
		return cert, nil
	}
	cert, err := gen()
	if err != nil {
		return nil, err
	}
	if c.certs == nil {
		c.certs = map[string]*tls.Certificate{}
	}
	c.certs[host] = cert
	return cert, nil
}
