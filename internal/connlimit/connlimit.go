// Package connlimit bounds the connections listeners hold open, in total
// and per source address, so that no client can take a process to its
// descriptor limit: a connection over a bound is handed to a refusal
// function (which may write a short answer) and closed at once, never
// served.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Over says which bound a refused connection is over.
type Over int

// The bounds.
const (
	// Total: Limiter's max connections are open.
	Total Over = iota + 1
	// Source: the connection's source address has its share open.
	Source
)

// Limiter counts the open connections of the listeners it wraps. Several
// listeners may share one Limiter (and so its bounds). It is safe for
// concurrent use.
type Limiter struct {
	max, perSource int

	mu    sync.Mutex
	total int
	per   map[netip.Addr]int
}

// New returns a Limiter allowing max connections at once, of which
// perSource from one source address. Zero means no bound.
func New(max, perSource int) *Limiter {
	return &Limiter{max: max, perSource: perSource, per: make(map[netip.Addr]int)}
}

// Max returns the total bound.
func (l *Limiter) Max() int { return l.max }

// PerSource returns the per-source bound.
func (l *Limiter) PerSource() int { return l.perSource }

// Open returns the number of connections open.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// acquire takes a slot for addr, or reports which bound is reached.
func (l *Limiter) acquire(addr netip.Addr) Over {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return Total
	}
	if l.perSource > 0 && l.per[addr] >= l.perSource {
		return Source
	}
	l.total++
	l.per[addr]++
	return 0
}

func (l *Limiter) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.per[addr]--; l.per[addr] <= 0 {
		delete(l.per, addr)
	}
}

// Listener returns inner, counting its connections against l. A
// connection over a bound is passed to refuse (nil: none), then closed;
// Accept goes on to the next. A counted connection releases its slot when
// it is closed (once, however many times Close is called). Accepted TCP
// connections keep their *net.TCPConn methods (SyscallConn, CloseWrite,
// ReadFrom), which the transparent listener and splicing rely on.
func (l *Limiter) Listener(inner net.Listener, refuse func(c net.Conn, why Over)) net.Listener {
	return &listener{Listener: inner, l: l, refuse: refuse}
}

type listener struct {
	net.Listener
	l      *Limiter
	refuse func(net.Conn, Over)
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := sourceOf(c)
		if why := ln.l.acquire(addr); why != 0 {
			if ln.refuse != nil {
				ln.refuse(c, why)
			}
			c.Close()
			continue
		}
		rel := &releaser{l: ln.l, addr: addr}
		if tc, ok := c.(*net.TCPConn); ok {
			return &tcpConn{TCPConn: tc, rel: rel}, nil
		}
		return &conn{Conn: c, rel: rel}, nil
	}
}

// sourceOf returns the address part of c's remote address.
func sourceOf(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

type releaser struct {
	once sync.Once
	l    *Limiter
	addr netip.Addr
}

func (r *releaser) release() { r.once.Do(func() { r.l.release(r.addr) }) }

type tcpConn struct {
	*net.TCPConn
	rel *releaser
}

// Close closes the connection and frees its slot.
func (c *tcpConn) Close() error {
	defer c.rel.release()
	return c.TCPConn.Close()
}

type conn struct {
	net.Conn
	rel *releaser
}

// Close closes the connection and frees its slot.
func (c *conn) Close() error {
	defer c.rel.release()
	return c.Conn.Close()
}
