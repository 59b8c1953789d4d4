package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// serveTransparent runs ServeTransparent on a loopback listener and returns
// its address.
func serveTransparent(t *testing.T, e *env, o TransparentOptions) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.proxy.ServeTransparent(ctx, l, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeTransparent: %v", err)
		}
	})
	return l.Addr().String()
}

// serveAsTPROXY accepts on addr and hands each connection to the
// transparent handler as if the transparent listener were elsewhere: the
// connection's local address is then its original destination, as under
// TPROXY. This reaches the ClientHello and policy paths without a
// firewall; transparent_netns_test.go covers REDIRECT with a real one.
func serveAsTPROXY(t *testing.T, e *env, addr string, o TransparentOptions) string {
	t.Helper()
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	cfg := &transparentConfig{
		TransparentOptions: o,
		self:               netip.MustParseAddrPort("192.0.2.1:3129"), // the transparent listener, elsewhere
		// This test's clients are sockets of sessctl's own user, which
		// the loop check refuses (see TestLoopCheck).
		loop: func(net.Conn, netip.AddrPort) string { return "" },
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); e.proxy.serveRedirected(ctx, c, cfg) }()
		}
	}()
	t.Cleanup(func() { cancel(); l.Close(); wg.Wait() })
	return l.Addr().String()
}

// refusals returns the refused records of the log.
func refusals(e *env) []*store.Record {
	var out []*store.Record
	for _, r := range e.records() {
		if r.Kind == store.KindRefused {
			out = append(out, r)
		}
	}
	return out
}

// waitRefusal waits for a transparent refusal whose reason contains want.
func waitRefusal(t *testing.T, e *env, want string) *store.Record {
	t.Helper()
	var got *store.Record
	testutil.WaitFor(t, 0, "a transparent refusal record naming "+want, func() bool {
		for _, r := range refusals(e) {
			if r.Conn.Mode == "transparent" && strings.Contains(r.Reason, want) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

func TestServeTransparentRefusesDirectConnections(t *testing.T) {
	e := newEnv(t, okJSON)
	addr := serveTransparent(t, e, TransparentOptions{})

	// A TLS client that connects to the listener itself, not redirected
	// by a firewall: refused before a byte is read.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	_, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "api.openai.com", RootCAs: pool})
	if err == nil {
		t.Fatal("TLS handshake with a direct connection succeeded")
	}
	rec := waitRefusal(t, e, "not redirected")
	if rec.Outcome != store.OutcomeRefused || rec.Conn.Client == "" {
		t.Errorf("refusal record = %+v", rec)
	}
	if len(e.upstreamRequests()) != 0 {
		t.Error("a direct connection reached the upstream")
	}
}

func TestServeTransparentOptions(t *testing.T) {
	e := newEnv(t, okJSON)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := e.proxy.ServeTransparent(context.Background(), l, TransparentOptions{DstCheck: "sometimes"}); err == nil {
		t.Fatal("ServeTransparent accepted an unknown DstCheck")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.proxy.ServeTransparent(ctx, l, TransparentOptions{DstCheck: DstCheckNone}); err != nil {
		t.Fatalf("ServeTransparent after cancel = %v, want nil", err)
	}
}

// TestTransparentIntercept runs a chat completion through the transparent
// path: SNI peeked, leaf minted for it, credential swapped, recorded.
func TestTransparentIntercept(t *testing.T) {
	e := newEnv(t, okJSON)
	addr := serveAsTPROXY(t, e, "127.0.0.1:0", TransparentOptions{DstCheck: DstCheckNone})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	c := &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	resp, body := post(t, c, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	seen := e.upstreamRequests()
	if len(seen) != 1 || seen[0].Header.Get("Authorization") != "Bearer "+testRealKey {
		t.Fatalf("upstream did not get the request with the real key: %d requests", len(seen))
	}
	var ex *store.Record
	for _, r := range e.records() {
		if r.Kind == store.KindExchange {
			ex = r
		}
	}
	if ex == nil || ex.Conn.Mode != "transparent" || ex.Host != "api.openai.com" || ex.Outcome != store.OutcomeForwarded {
		t.Fatalf("exchange record = %+v", ex)
	}
}

func TestTransparentRefusals(t *testing.T) {
	e := newEnv(t, okJSON)
	addr := serveAsTPROXY(t, e, "127.0.0.1:0", TransparentOptions{DstCheck: DstCheckNone})
	tlsErr := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	raw := func(send string) []byte {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, send)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		return b
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)

	tests := []struct {
		name       string
		do         func(t *testing.T)
		wantReason string
	}{
		{"host not in policy", func(t *testing.T) {
			err := tlsErr(&tls.Config{ServerName: "evil.example", RootCAs: pool})
			if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
				t.Errorf("client error = %v, want an unrecognized_name alert", err)
			}
		}, "egress to evil.example is not allowed"},
		{"no SNI", func(t *testing.T) {
			err := tlsErr(&tls.Config{InsecureSkipVerify: true})
			if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
				t.Errorf("client error = %v, want an unrecognized_name alert", err)
			}
		}, "without a server name"},
		{"garbage TLS record", func(t *testing.T) {
			got := raw("\x16\x03\x01\xff\xff")
			if string(got) != "\x15\x03\x03\x00\x02\x02\x32" {
				t.Errorf("answer = %q, want a decode_error alert", got)
			}
		}, "unreadable TLS ClientHello"},
		{"truncated ClientHello", func(t *testing.T) {
			if got := raw("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"); len(got) != 0 {
				t.Errorf("answer = %q, want none", got)
			}
		}, "no complete TLS ClientHello"},
		{"not TLS, not HTTP", func(t *testing.T) {
			if got := raw("SSH-2.0-OpenSSH_9.6\r\n"); len(got) != 0 {
				t.Errorf("answer = %q, want none", got)
			}
		}, "not TLS"},
		{"plain HTTP to an intercepted host", func(t *testing.T) {
			got := raw("POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 0\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil)
			if err != nil {
				t.Fatalf("answer %q: %v", got, err)
			}
			body, _ := io.ReadAll(resp.Body)
			ae := apiErr(t, body)
			if resp.StatusCode != 403 || resp.Header.Get("X-Should-Retry") != "false" || ae.Type != errForbidden || ae.Code != "plain_http" ||
				!strings.Contains(ae.Message, "use https://api.openai.com") {
				t.Errorf("answer = %d %+v", resp.StatusCode, ae)
			}
		}, "plain HTTP to api.openai.com is refused"},
		{"plain HTTP elsewhere", func(t *testing.T) {
			got := raw("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
			if !strings.HasPrefix(string(got), "HTTP/1.1 403 ") {
				t.Errorf("answer = %q, want a 403", got)
			}
		}, "plain HTTP to example.com is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.do(t)
			rec := waitRefusal(t, e, tt.wantReason)
			if rec.Outcome != store.OutcomeRefused || rec.Extra["original_dst"] != addr {
				t.Errorf("refusal record = %+v", rec)
			}
		})
	}
	if rec := waitRefusal(t, e, "plain HTTP to api.openai.com"); rec.Method != "POST" || rec.Status != 403 || rec.Conn.Transport != "http" {
		t.Errorf("plain-HTTP refusal record = %+v", rec)
	}
	if len(e.upstreamRequests()) != 0 {
		t.Error("a refused connection reached the upstream")
	}
}

// TestTransparentDestinationCheck checks DstCheckResolve: the original
// destination must be an address of the SNI name (localhost is 127.0.0.1
// in /etc/hosts, not 127.0.0.2), and a passthrough connection is spliced to
// the original destination without decryption.
func TestTransparentDestinationCheck(t *testing.T) {
	// A TLS server of its own for localhost, which only its CA trusts.
	cert, pool := selfSignedLocalhost(t)
	passUp, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer passUp.Close()
	go func() {
		for {
			c, err := passUp.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	var mu sync.Mutex
	var dialled []string
	e := newEnv(t, okJSON, func(o *Options) {
		o.Passthrough = append(o.Passthrough, "localhost")
		// The original destination is this test's own listener; record
		// it and reach the TLS server above instead.
		o.PassthroughDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialled = append(dialled, addr)
			mu.Unlock()
			return (&net.Dialer{}).DialContext(ctx, network, passUp.Addr().String())
		}
	})
	if addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", "localhost"); err != nil ||
		!containsAddr(addrs, "127.0.0.1") || containsAddr(addrs, "127.0.0.2") {
		t.Skipf("localhost resolves to %v (%v), not just 127.0.0.1", addrs, err)
	}

	t.Run("mismatch", func(t *testing.T) {
		addr := serveAsTPROXY(t, e, "127.0.0.2:0", TransparentOptions{DstCheck: DstCheckResolve})
		_, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: pool})
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Errorf("client error = %v, want an access_denied alert", err)
		}
		waitRefusal(t, e, "is not an address of localhost")
	})
	t.Run("resolver fails", func(t *testing.T) {
		broken := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return nil, errors.New("no DNS here")
		}}
		addr := serveAsTPROXY(t, e, "127.0.0.1:0", TransparentOptions{DstCheck: DstCheckResolve, Resolver: broken})
		if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "other.example", RootCAs: pool}); err == nil {
			t.Error("handshake succeeded although the name could not be checked")
		}
		waitRefusal(t, e, "cannot resolve other.example")
	})
	t.Run("match: spliced to the original destination", func(t *testing.T) {
		addr := serveAsTPROXY(t, e, "127.0.0.1:0", TransparentOptions{DstCheck: DstCheckResolve})
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: pool})
		if err != nil {
			t.Fatalf("TLS through the splice, trusting only the upstream's CA: %v", err)
		}
		io.WriteString(c, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo = %q, %v", buf, err)
		}
		c.Close()
		var rec *store.Record
		testutil.WaitFor(t, 0, "the tunnel's connect record", func() bool {
			for _, r := range e.records() {
				if r.Kind == store.KindConnect && r.Host == "localhost" {
					rec = r
					return true
				}
			}
			return false
		})
		if rec.Outcome != store.OutcomeSpliced || rec.Conn.Mode != "transparent" || rec.Extra["target"] != addr {
			t.Errorf("connect record = %+v", rec)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(dialled) != 1 || dialled[0] != addr {
			t.Errorf("splice dialled %q, want the original destination %s", dialled, addr)
		}
	})
}

func containsAddr(addrs []netip.Addr, s string) bool {
	for _, a := range addrs {
		if a.Unmap().String() == s {
			return true
		}
	}
	return false
}

// TestLoopCheck checks that a connection from one of sessctl's own sockets
// (same user) is seen as a loop, and that the lookup finds nothing for
// addresses no socket has.
func TestLoopCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	out, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in := <-accepted
	defer in.Close()

	local, _ := addrPort(out.LocalAddr())
	remote, _ := addrPort(out.RemoteAddr())
	uid, err := socketUID(local, remote)
	if errors.Is(err, errors.ErrUnsupported) || (err != nil && !errors.Is(err, errNoSocket)) {
		t.Skipf("sock_diag unavailable here: %v", err)
	}
	if err != nil || int(uid) != os.Geteuid() {
		t.Fatalf("socketUID(own socket) = %d, %v; want %d", uid, err, os.Geteuid())
	}
	if msg := loopCheck(in, remote); !strings.Contains(msg, "redirect loop") {
		t.Errorf("loopCheck(own connection) = %q, want a loop", msg)
	}
	if _, err := socketUID(netip.MustParseAddrPort("127.0.0.1:1"), remote); !errors.Is(err, errNoSocket) {
		t.Errorf("socketUID(no such socket) error = %v, want errNoSocket", err)
	}
}

func selfSignedLocalhost(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
