package proxy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

const (
	testRealKey     = "sk-real-upstream-key-0123456789"
	testRunnerToken = "sct_test-runner-token-abcdefghijklmnop"
)

// env is a whole sessctl in-process: a real CA, a real bbolt store, the
// real proxy on loopback, and a TLS server standing in for api.openai.com
// with a certificate from a CA of its own.
type env struct {
	t        *testing.T
	proxy    *Server
	proxyURL *url.URL
	store    *store.Store
	dbPath   string
	caPEM    []byte
	client   *http.Client
	upstream net.Listener
	upCADir  string

	mu      sync.Mutex
	seen    []*http.Request // requests the upstream received
	handler http.HandlerFunc
	// routes sends the upstream connections for a host:port to another
	// stand-in (addUpstream) than the default one.
	routes map[string]string
}

// testHosts are the hosts both test CAs may mint for: the providers'
// API hosts and a host assigned a provider in configuration.
var testHosts = []string{"api.openai.com", "api.anthropic.com", "res1.openai.azure.com", "llm.corp.example"}

type envOption func(*Options)

func newEnv(t *testing.T, handler http.HandlerFunc, opts ...envOption) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, handler: handler, dbPath: filepath.Join(dir, "sessions.db")}

	// The upstream stand-in, with its own CA that only the proxy trusts.
	upCADir := filepath.Join(dir, "upstream-ca")
	e.upCADir = upCADir
	if err := ca.Init(upCADir, ca.InitOptions{Hosts: append([]string{"other.example"}, testHosts...)}); err != nil {
		t.Fatal(err)
	}
	upCA, err := ca.Load(upCADir, ca.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ul, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: upCA.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	e.upstream = ul
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		e.mu.Lock()
		c := r.Clone(context.Background())
		c.Body = io.NopCloser(bytes.NewReader(body))
		e.seen = append(e.seen, c)
		h := e.handler
		e.mu.Unlock()
		h(w, r)
	})}
	go up.Serve(ul)
	t.Cleanup(func() { up.Close() })

	// sessctl's own CA, store and authenticator.
	caDir := filepath.Join(dir, "ca")
	if err := ca.Init(caDir, ca.InitOptions{Hosts: append([]string{TokenHost}, testHosts...)}); err != nil {
		t.Fatal(err)
	}
	authority, err := ca.Load(caDir, ca.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.caPEM = authority.CertPEM()
	st, err := store.Open(e.dbPath, store.Options{SigningKeyFile: filepath.Join(dir, "log.key"), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	auth, err := identity.New(context.Background(), identity.Config{
		Runners: []identity.Runner{{Name: "ci-1", TokenSHA256: identity.HashToken(testRunnerToken)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr, dial, upTLS, err := NewTransport(UpstreamOptions{CAFile: filepath.Join(upCADir, "ca.crt"), Addr: ul.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	// Connections go to the default stand-in unless addUpstream routed
	// their host elsewhere.
	defaultDial := dial
	dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		e.mu.Lock()
		to, ok := e.routes[addr]
		e.mu.Unlock()
		if ok {
			var d net.Dialer
			return d.DialContext(ctx, network, to)
		}
		return defaultDial(ctx, network, addr)
	}
	tr.DialContext = dial
	rs := rules.Default()
	o := Options{
		Intercept: []string{"api.openai.com"}, Passthrough: []string{"other.example"},
		Certs: authority, Store: st, Auth: auth,
		Rules:     func() *rules.Set { return rs },
		Approvals: approval.NewQueue(0),
		Keys:      provider.Keys{provider.OpenAI: {"": testRealKey}},
		Upstream:  tr, UpstreamDial: dial, UpstreamTLS: upTLS,
		// Passthrough hosts (other.example) are reached at the stand-in.
		PassthroughDial: dial,
		Logger:          quietLog(),
	}
	for _, f := range opts {
		f(&o)
	}
	px, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = px
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { px.ServeExplicit(ctx, pl); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		px.Close()
		tr.CloseIdleConnections()
		st.Close()
	})
	e.proxyURL = &url.URL{Scheme: "http", Host: pl.Addr().String()}
	e.client = e.newClient()
	return e
}

// newClient returns a Go client that uses the proxy and trusts only
// sessctl's CA.
func (e *env) newClient() *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.caPEM) {
		e.t.Fatal("bad CA PEM")
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(e.proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
}

func (e *env) caFile() string {
	p := filepath.Join(e.t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, e.caPEM, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) upstreamRequests() []*http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*http.Request(nil), e.seen...)
}

// records returns every record of the log in sequence order.
func (e *env) records() []*store.Record {
	var out []*store.Record
	if err := e.store.List(store.Filter{}, func(r *store.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b *store.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

func quietLog() *slog.Logger {
	if os.Getenv("SESSCTL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (e *env) upstreamCAFile() string { return filepath.Join(e.upCADir, "ca.crt") }

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clientTrusting returns a client through proxyURL trusting only caPEM.
func clientTrusting(proxyURL *url.URL, caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
}

// standIn is a further upstream stand-in, for one host.
type standIn struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (s *standIn) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.seen...)
}

// addUpstream starts a TLS stand-in of its own for host (one of
// testHosts), with a certificate from the upstream CA, and routes the
// proxy's upstream connections for host:443 to it.
func (e *env) addUpstream(host string, h http.HandlerFunc) *standIn {
	e.t.Helper()
	upCA, err := ca.Load(e.upCADir, ca.LoadOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: upCA.GetCertificate})
	if err != nil {
		e.t.Fatal(err)
	}
	si := &standIn{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c := r.Clone(context.Background())
		c.Body = io.NopCloser(bytes.NewReader(body))
		si.mu.Lock()
		si.seen = append(si.seen, c)
		si.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
	})}
	go srv.Serve(l)
	e.t.Cleanup(func() { srv.Close() })
	e.mu.Lock()
	if e.routes == nil {
		e.routes = map[string]string{}
	}
	e.routes[net.JoinHostPort(host, "443")] = l.Addr().String()
	e.mu.Unlock()
	return si
}
