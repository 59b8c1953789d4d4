package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/connlimit"
	"github.com/sessctl/sessctl/proxy"
)

// Bounds of the admin listener's connections: few clients (operators, a
// Prometheus scraper, the CLI) are expected, and a flood of them must not
// take descriptors the proxy needs.
const (
	adminMaxConns          = 256
	adminMaxConnsPerSource = 64
)

// fdsPerConn is how many descriptors one proxied connection may use: the
// runner's side and the upstream's (or the passthrough destination's).
const fdsPerConn = 2

// fdReserve is kept for the database, listeners, the admin side and logs.
const fdReserve = 64 + adminMaxConns

// fitConns raises the soft descriptor limit to the hard one and returns
// maxConns, lowered if the limit cannot hold that many connections.
func fitConns(maxConns int, log *slog.Logger) int {
	soft, err := raiseNoFile()
	if err != nil {
		log.Warn("cannot raise the descriptor limit", "err", err)
	}
	if soft <= 0 {
		return maxConns
	}
	fit := (int(soft) - fdReserve) / fdsPerConn
	if fit < 1 {
		fit = 1
	}
	if maxConns > fit {
		log.Warn("max_conns lowered to fit the descriptor limit", "max_conns", maxConns, "lowered_to", fit, "nofile", soft)
		return fit
	}
	return maxConns
}

// limitAdmin bounds the admin listener's connections; over the bounds a
// client gets a JSON 503 or 429 unread.
func limitAdmin(l net.Listener) net.Listener {
	return connlimit.New(adminMaxConns, adminMaxConnsPerSource).Listener(l, func(c net.Conn, why connlimit.Over) {
		status, msg := http.StatusServiceUnavailable, fmt.Sprintf("the admin listener has %d connections open", adminMaxConns)
		if why == connlimit.Source {
			status, msg = http.StatusTooManyRequests, fmt.Sprintf("this address has %d connections open to the admin listener", adminMaxConnsPerSource)
		}
		body, _ := json.Marshal(admin.APIError{Error: msg})
		c.SetWriteDeadline(time.Now().Add(time.Second))
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nRetry-After: 1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			status, http.StatusText(status), len(body), body)
	})
}

// diskEvery is how often the log volume's free space is measured.
const diskEvery = 2 * time.Second

// writeMetrics writes the proxy's counters and the gauges of the budgets
// and the log volume.
func (s *server) writeMetrics(m *proxy.Metrics) func(w io.Writer) error {
	return func(w io.Writer) error {
		if err := m.WritePrometheus(w); err != nil {
			return err
		}
		low := 0
		if s.disk.Low() {
			low = 1
		}
		_, err := fmt.Fprintf(w, "# TYPE sessctl_disk_free_bytes gauge\nsessctl_disk_free_bytes %d\n"+
			"# TYPE sessctl_disk_reserve_bytes gauge\nsessctl_disk_reserve_bytes %d\n"+
			"# TYPE sessctl_disk_below_reserve gauge\nsessctl_disk_below_reserve %d\n"+
			"# TYPE sessctl_buffered_bytes gauge\nsessctl_buffered_bytes %d\n"+
			"# TYPE sessctl_open_connections gauge\nsessctl_open_connections %d\n"+
			"# TYPE sessctl_goroutines gauge\nsessctl_goroutines %d\n",
			s.disk.Free(), s.disk.Reserve(), low, s.proxy.BufferedBytes(), s.proxy.OpenConns(), runtime.NumGoroutine())
		return err
	}
}
