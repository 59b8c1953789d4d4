package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/proxy/internal/clienthello"
	"github.com/sessctl/sessctl/store"
)

// Destination checks of the transparent listener (TransparentOptions.DstCheck).
const (
	// DstCheckResolve resolves the SNI name and requires the original
	// destination's address among the answers.
	DstCheckResolve = "resolve"
	// DstCheckNone trusts the SNI name whatever the original destination.
	DstCheckNone = "none"
)

// Timeouts of the transparent listener: the client's first bytes, the
// resolution of its SNI name, and the answer to a refused client.
const (
	peekTimeout    = 10 * time.Second
	resolveTimeout = 5 * time.Second
	refuseTimeout  = 5 * time.Second
)

// TLS alert descriptions (RFC 8446 section 6) sent to refused clients.
const (
	alertAccessDenied     = 49
	alertDecodeError      = 50
	alertUnrecognizedName = 112
)

// TransparentOptions configure the transparent listener.
type TransparentOptions struct {
	// DstCheck says how the original destination must agree with the SNI
	// name: DstCheckResolve (the default) or DstCheckNone.
	DstCheck string
	// Resolver resolves SNI names for DstCheckResolve; nil uses
	// net.DefaultResolver. It must answer as the runners' resolver does.
	Resolver *net.Resolver
}

// check validates o and fills in its defaults.
func (o *TransparentOptions) check() error {
	switch o.DstCheck {
	case "":
		o.DstCheck = DstCheckResolve
	case DstCheckResolve, DstCheckNone:
	default:
		return fmt.Errorf("proxy: transparent destination check %q: want %q or %q", o.DstCheck, DstCheckResolve, DstCheckNone)
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	return nil
}

// ServeTransparent serves connections that a firewall redirected to l
// (iptables/nftables REDIRECT, or TPROXY) until ctx is done. For each, the
// original destination comes from conntrack (SO_ORIGINAL_DST), the host
// name from the TLS ClientHello's SNI, peeked without consuming it. SNI
// decides the egress policy: intercepted hosts are terminated and served as
// in explicit mode, passthrough hosts are spliced to the original
// destination, and anything else (no SNI, not TLS, plain HTTP, a
// destination that does not belong to the name, a connection made to the
// listener itself, a redirect loop) is refused and recorded. l is closed
// when ctx is done; Close waits for the connections still open.
func (s *Server) ServeTransparent(ctx context.Context, l net.Listener, o TransparentOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	self, err := addrPort(l.Addr())
	if err != nil {
		return fmt.Errorf("proxy: transparent listener: %w", err)
	}
	cfg := &transparentConfig{TransparentOptions: o, self: self, loop: loopCheck}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("proxy: transparent listener: %w", err)
			}
			// Out of file descriptors and the like: wait, as
			// http.Server does, rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("transparent accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveRedirected(ctx, c, cfg)
		}()
	}
}

// transparentConfig is what serveRedirected needs of its listener.
type transparentConfig struct {
	TransparentOptions
	self netip.AddrPort // the listener's address
	// loop returns why c, going to dst, is a redirect loop, or "".
	loop func(c net.Conn, dst netip.AddrPort) string
}

// redirected is one connection accepted by the transparent listener.
type redirected struct {
	s   *Server
	c   net.Conn // replays the peeked bytes once peeked
	t   *tunnel
	dst netip.AddrPort // original destination
}

// serveRedirected finds where c was going and applies the egress policy.
func (s *Server) serveRedirected(ctx context.Context, c net.Conn, o *transparentConfig) {
	s.opt.Metrics.transparentConns.Inc()
	r := &redirected{s: s, c: c, t: &tunnel{
		id: uuid.Must(uuid.NewV7()).String(), mode: "transparent", client: c.RemoteAddr().String(),
	}}
	dst, err := destination(c, o.self)
	if err != nil {
		r.refuse(0, "cannot tell the original destination: "+err.Error())
		return
	}
	r.dst = dst
	if msg := o.loop(c, dst); msg != "" {
		s.log.Warn("transparent: refusing a self-loop: exempt sessctl's own traffic from the redirect (--uid-owner or mark)",
			"client", r.t.client, "dst", dst.String())
		r.refuse(0, msg)
		return
	}

	info, pc, err := clienthello.Peek(c, peekTimeout)
	r.c = pc
	switch {
	case errors.Is(err, clienthello.ErrNotTLS):
		r.refusePlain()
		return
	case errors.Is(err, clienthello.ErrNoSNI):
		r.refuse(alertUnrecognizedName, "TLS without a server name (SNI)")
		return
	case errors.Is(err, clienthello.ErrMalformed), errors.Is(err, clienthello.ErrTooLarge):
		r.refuse(alertDecodeError, "unreadable TLS ClientHello: "+err.Error())
		return
	case err != nil:
		// Truncated, timed out, or reset: nobody to answer.
		r.refuse(0, "no complete TLS ClientHello: "+err.Error())
		return
	}
	host := info.ServerName
	r.t.host = host
	r.t.port = strconv.Itoa(int(dst.Port()))
	d := s.decide(host)
	if d == refuse {
		r.refuse(alertUnrecognizedName, "egress to "+host+" is not allowed")
		return
	}
	if o.DstCheck == DstCheckResolve {
		if msg := checkDestination(ctx, o.Resolver, host, dst.Addr()); msg != "" {
			r.refuse(alertAccessDenied, msg)
			return
		}
	}
	switch d {
	case intercept:
		s.opt.Metrics.transparentInt.Inc()
		s.terminate(pc, r.t)
	case passthrough:
		s.splice(ctx, pc, r.t, dst.String())
	}
}

// destination returns the original destination of c, or an error if c was
// not redirected: a connection made to the listener's own address is a
// client that bypassed the redirect, or a loop back into sessctl, and
// splicing it would connect sessctl to itself.
func destination(c net.Conn, self netip.AddrPort) (netip.AddrPort, error) {
	local, err := addrPort(c.LocalAddr())
	if err != nil {
		return netip.AddrPort{}, err
	}
	dst, err := originalDst(c)
	if err != nil {
		// No conntrack entry: under TPROXY the socket's local address is
		// the original destination.
		dst = local
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if dst.Port() == self.Port() && (dst.Addr() == local.Addr().Unmap() || dst.Addr() == self.Addr().Unmap()) {
		return netip.AddrPort{}, fmt.Errorf("connection made to the transparent listener %s itself, not redirected by the firewall", dst)
	}
	if !dst.Addr().IsValid() || dst.Addr().IsUnspecified() || dst.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("invalid original destination %s", dst)
	}
	return dst, nil
}

// loopCheck reports a redirect loop: the client socket belongs to sessctl's
// own user, so this is sessctl's own upstream connection redirected back
// to it (the firewall lacks the --uid-owner or mark exemption). It returns
// the refusal message, or "" if there is no loop.
func loopCheck(c net.Conn, dst netip.AddrPort) string {
	client, err := addrPort(c.RemoteAddr())
	if err != nil {
		return ""
	}
	uid, err := socketUID(client, dst)
	if err != nil || int64(uid) != int64(os.Geteuid()) {
		return ""
	}
	return fmt.Sprintf("redirect loop: connection to %s from a socket of sessctl's own user (uid %d); exempt sessctl's traffic from the redirect", dst, uid)
}

// checkDestination requires dst among the addresses host resolves to, so
// that a client cannot present one name (and get its policy) while going
// to another address. It returns the refusal message, or "" if dst
// belongs to host.
func checkDestination(ctx context.Context, res *net.Resolver, host string, dst netip.Addr) string {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := res.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Sprintf("cannot resolve %s to check the original destination %s", host, dst)
	}
	if slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.Unmap() == dst.Unmap() }) {
		return ""
	}
	return fmt.Sprintf("original destination %s is not an address of %s", dst, host)
}

// refusePlain answers bytes that are not TLS: a plain-HTTP request (port
// 80 redirected) gets an OpenAI-shaped 403, anything else is closed.
func (r *redirected) refusePlain() {
	br := bufio.NewReader(io.LimitReader(r.c, 64<<10))
	if b, err := br.Peek(1); err != nil || b[0] < 'A' || b[0] > 'Z' {
		r.refuse(0, "not TLS")
		return
	}
	r.c.SetDeadline(time.Now().Add(peekTimeout))
	req, err := http.ReadRequest(br)
	if err != nil {
		r.refuse(0, "not TLS, and not a readable HTTP request")
		return
	}
	host := hostOnly(req.Host)
	if len(host) > 253 {
		host = host[:253]
	}
	ref := refPlainHTTP.with(host)
	if r.s.decide(host) == intercept {
		ref = refPlainHTTPS.with(host)
	}
	msg, body := ref.msg, ref.body()
	r.c.SetWriteDeadline(time.Now().Add(refuseTimeout))
	fmt.Fprintf(r.c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nX-Should-Retry: false\r\nCache-Control: no-store\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	r.c.Close()
	rec := r.record(msg)
	rec.Host, rec.Method, rec.Path, rec.Status = host, req.Method, req.URL.Path, http.StatusForbidden
	rec.Conn.Transport = "http"
	r.s.recordRefusal(context.Background(), rec)
}

// refuse closes the connection, after a fatal TLS alert if alert is not
// zero, and records the refusal.
func (r *redirected) refuse(alert byte, msg string) {
	if alert != 0 {
		r.c.SetWriteDeadline(time.Now().Add(refuseTimeout))
		r.c.Write([]byte{21, 3, 3, 0, 2, 2, alert}) // alert record: fatal
	}
	r.c.Close()
	r.s.log.Debug("transparent connection refused", "conn", r.t.id, "client", r.t.client, "host", r.t.host, "dst", r.dst.String(), "reason", msg)
	r.s.recordRefusal(context.Background(), r.record(msg))
}

// record is the refusal record of the connection.
func (r *redirected) record(msg string) *store.Record {
	rec := &store.Record{Conn: r.t.conn(), Host: r.t.host, Reason: msg}
	rec.Conn.Transport = "tcp"
	if r.dst.IsValid() {
		rec.Path = r.dst.String()
		rec.Extra = map[string]string{"original_dst": r.dst.String()}
	}
	return rec
}

// addrPort converts a TCP address.
func addrPort(a net.Addr) (netip.AddrPort, error) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%v is not a TCP address", a)
	}
	return ta.AddrPort(), nil
}
