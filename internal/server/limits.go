package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sessctl/sessctl/internal/admin"

	"github.com/sessctl/sessctl/internal/connlimit"
	"github.com/sessctl/sessctl/internal/diskspace"
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

// observeDisk adds the log volume's gauges to the metrics.
func observeDisk(m *proxy.Metrics, d *diskspace.Watch) {
	m.Registerer().MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessctl_disk_free_bytes", Help: "Free bytes on the session log's volume (measured every 2s)."},
			func() float64 { return float64(d.Free()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessctl_disk_reserve_bytes", Help: "disk_reserve: below it refusals are only counted."},
			func() float64 { return float64(d.Reserve()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessctl_disk_below_reserve", Help: "1 while the log's volume is below disk_reserve, else 0."},
			func() float64 {
				if d.Low() {
					return 1
				}
				return 0
			}),
	)
}
