package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sessctl/sessctl/store"
)

// handshakeTimeout bounds the runner's TLS handshake on a hijacked
// connection, which http.Server's timeouts do not cover.
const handshakeTimeout = 10 * time.Second

// tunnel is what sessctl knows of one client connection before any request
// on it: where it was headed, and the credential given on CONNECT.
type tunnel struct {
	id        string
	mode      string // explicit | transparent
	host      string // pinned host: CONNECT target or SNI
	port      string // upstream port
	client    string
	proxyCred string
}

// target is the upstream host:port of the tunnel.
func (t *tunnel) target() string {
	port := t.port
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(t.host, port)
}

func (t *tunnel) conn() store.Conn {
	return store.Conn{ID: t.id, Mode: t.mode, Client: t.client, Transport: "http"}
}

// tunnelConn carries a tunnel with its terminated TLS connection into the
// inner HTTP server.
type tunnelConn struct {
	*tls.Conn
	t *tunnel
}

type tunnelKey struct{}

func withTunnel(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tunnelConn); ok {
		return context.WithValue(ctx, tunnelKey{}, tc.t)
	}
	return ctx
}

func tunnelFrom(ctx context.Context) *tunnel {
	t, _ := ctx.Value(tunnelKey{}).(*tunnel)
	return t
}

// runnerCipherSuites are the TLS 1.2 suites offered to runners: ECDHE with
// an AEAD only (no CBC, no SHA-1 MACs, no static RSA key exchange). TLS 1.3
// suites are all AEAD and not configurable.
var runnerCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// handshakeConn is a runner's connection during its TLS handshake: the
// shared runner TLS configuration finds the tunnel through it
// (ClientHelloInfo.Conn), and notes why it refused the ClientHello.
type handshakeConn struct {
	net.Conn
	t        *tunnel
	mismatch string
}

// sessionHost prefixes the host a session ticket was issued for, in the
// ticket's extra data (see newRunnerTLS).
const sessionHost = "sessctl-host:"

// newRunnerTLS returns the TLS configuration runners' connections are
// terminated with: one for the server's life, so that a session ticket
// issued on one connection lets the runner's next connection resume,
// without a new key exchange and certificate. Each ClientHello is checked
// before resumption is considered: its SNI name must be the tunnel's host
// (else: unrecognized_name), and a ticket resumes only on a connection to
// the host it was issued for. A ClientHello without SNI gets the tunnel's
// host's leaf and no resumption.
func (s *Server) newRunnerTLS() *tls.Config {
	getCert := func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		hc, ok := hello.Conn.(*handshakeConn)
		if !ok {
			return nil, errors.New("proxy: runner handshake without a tunnel")
		}
		if hostOnly(hello.ServerName) == "" {
			hello.ServerName = hc.t.host
		}
		return s.opt.Certs.GetCertificate(hello)
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   runnerCipherSuites,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: getCert,
	}
	// Without SNI a ticket could not say which host it is for.
	noSNI := cfg.Clone()
	noSNI.SessionTicketsDisabled = true
	// refused answers a ClientHello for another host than the tunnel's:
	// no certificate and no error make crypto/tls send unrecognized_name
	// (an error would be internal_error); no resumption either.
	refused := &tls.Config{
		MinVersion:             tls.VersionTLS12,
		CipherSuites:           runnerCipherSuites,
		SessionTicketsDisabled: true,
		GetCertificate:         func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil },
	}
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		hc, ok := hello.Conn.(*handshakeConn)
		if !ok {
			return nil, errors.New("proxy: runner handshake without a tunnel")
		}
		name := hostOnly(hello.ServerName)
		switch {
		case name == "":
			return noSNI, nil
		case name != hc.t.host:
			hc.mismatch = fmt.Sprintf("SNI %q does not match tunnel host %q", name, hc.t.host)
			return refused, nil
		}
		return nil, nil
	}
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = append(ss.Extra, []byte(sessionHost+hostOnly(cs.ServerName)))
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		want := sessionHost + hostOnly(cs.ServerName)
		for _, x := range ss.Extra {
			if string(x) == want {
				return ss, nil
			}
		}
		// Issued for another host: a full handshake instead.
		return nil, nil
	}
	return cfg
}

// terminate performs the TLS handshake with the runner, presenting a leaf
// minted for the SNI name, and hands the connection to the inner server.
// The SNI name must be the tunnel's host: a runner cannot obtain a leaf
// for one host through a tunnel to another, and is told so with an
// unrecognized_name alert.
func (s *Server) terminate(raw net.Conn, t *tunnel) {
	hc := &handshakeConn{Conn: raw, t: t}
	conn := tls.Server(hc, s.runnerTLS)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		if hc.mismatch != "" {
			err = errors.New(hc.mismatch)
		}
		s.log.Debug("runner TLS handshake failed", "conn", t.id, "client", t.client, "host", t.host, "err", err)
		s.opt.Metrics.tlsErrors.Inc()
		raw.Close()
		return
	}
	if conn.ConnectionState().DidResume {
		s.opt.Metrics.tlsResumed.Inc()
	}
	if err := s.conns.push(&tunnelConn{Conn: conn, t: t}); err != nil {
		conn.Close()
	}
}

// connListener is a net.Listener fed with terminated tunnel connections,
// so that one http.Server (with its timeouts) serves them all.
type connListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

var errListenerClosed = errors.New("proxy: listener closed")

func (l *connListener) push(c net.Conn) error {
	select {
	case l.ch <- c:
		return nil
	case <-l.done:
		return errListenerClosed
	}
}

// Accept implements net.Listener.
func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, errListenerClosed
	}
}

// Close implements net.Listener.
func (l *connListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *connListener) Addr() net.Addr { return &net.TCPAddr{} }
