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

// terminate performs the TLS handshake with the runner, presenting a leaf
// minted for the SNI name, and hands the connection to the inner server.
// The SNI name must be the tunnel's host: a runner cannot obtain a leaf
// for one host through a tunnel to another.
func (s *Server) terminate(raw net.Conn, t *tunnel) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hostOnly(hello.ServerName)
			if name == "" {
				name = t.host
				hello.ServerName = name
			}
			if name != t.host {
				return nil, fmt.Errorf("SNI %q does not match tunnel host %q", name, t.host)
			}
			return s.opt.Certs.GetCertificate(hello)
		},
	}
	conn := tls.Server(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		s.log.Debug("runner TLS handshake failed", "conn", t.id, "client", t.client, "host", t.host, "err", err)
		s.opt.Metrics.tlsErrors.Inc()
		raw.Close()
		return
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
