package proxy

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sessctl/sessctl/internal/connlimit"
)

// inflight bounds the exchanges one identity has in progress at once, so
// that one runner cannot hold all of sessctl's memory (each request body
// is held whole, up to max_body) or fill the approval queue.
type inflight struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newInflight(max int) *inflight {
	return &inflight{max: max, n: make(map[string]int)}
}

// acquire takes a slot for key; it reports false when key has max in
// progress. A successful acquire must be followed by release.
func (l *inflight) acquire(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= l.max {
		return false
	}
	l.n[key]++
	return true
}

func (l *inflight) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key]--; l.n[key] <= 0 {
		delete(l.n, key)
	}
}

// refuseConn answers a connection over max_conns or max_conns_per_source
// on the explicit listener with an OpenAI-shaped 503 or 429, without
// reading it, and closes it.
func (s *Server) refuseConn(c net.Conn, why connlimit.Over) {
	s.countConnRefusal(why)
	ref := refTooManyConns.with(s.connLimit.Max())
	if why == connlimit.Source {
		ref = refTooManyConnsFrom.with(s.connLimit.PerSource())
	}
	body := ref.body()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Should-Retry: %t\r\nRetry-After: 1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		ref.status, http.StatusText(ref.status), ref.status == http.StatusTooManyRequests, len(body), body)
}

// countConnRefusal counts a connection refused over a bound.
func (s *Server) countConnRefusal(why connlimit.Over) {
	bound := "total"
	if why == connlimit.Source {
		bound = "source"
	}
	s.opt.Metrics.connsRefused.WithLabelValues(bound).Inc()
}

// OpenConns returns the connections the proxy's listeners hold open.
func (s *Server) OpenConns() int { return s.connLimit.Open() }

// BufferedBytes returns the bytes held of max_buffered_bytes.
func (s *Server) BufferedBytes() int64 { return s.mem.used.Load() }
