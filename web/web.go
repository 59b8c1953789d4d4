// Package web serves sessctl's admin listener: health and metrics for
// operators, and (behind admin tokens) the JSON API and the browser UI.
package web

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
)

// Options configure the admin handler.
type Options struct {
	// Health reports whether sessctl can do its job (the store can record);
	// /healthz answers 503 with the reason while it returns an error.
	Health func() error
	// Metrics writes the counters in Prometheus text format.
	Metrics func(w io.Writer) error
	Logger  *slog.Logger
}

// NewHandler returns the admin listener's handler.
func NewHandler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err := o.Health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if err := o.Metrics(w); err != nil && o.Logger != nil {
			o.Logger.Warn("writing metrics", "err", err)
		}
	})
	return mux
}
