package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"syscall"
)

// healthz answers 200 {"status":"ok"} while sessctl can do its job and 503
// with the reason otherwise, with Options.HealthDetail's members and the
// warnings (conditions that will close the gate if they go on). The
// reasons and warnings of a store error name files; only an authenticated
// caller (admin token or login) sees them in full, anyone else gets the
// error class without paths.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, authErr := h.authenticate(r)
	full := authErr == nil
	body := map[string]any{}
	if h.o.HealthDetail != nil {
		body = h.o.HealthDetail()
	}
	body["status"] = "ok"
	status := http.StatusOK
	if h.o.Health != nil {
		if err := h.o.Health(); err != nil {
			status = http.StatusServiceUnavailable
			body["status"], body["reason"] = "unavailable", publicReason(err, full, "session log unavailable")
		}
	}
	if h.o.Warnings != nil {
		var warnings []string
		for _, err := range h.o.Warnings() {
			warnings = append(warnings, publicReason(err, full, "warning (authenticate for details)"))
		}
		if len(warnings) > 0 {
			body["warnings"] = warnings
		}
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// publicReason words err for /healthz: in full for an authenticated
// caller; else its Public() wording if it has one, or generic followed by
// the system error (such as "no space left on device") if there is one,
// never a path.
func publicReason(err error, full bool, generic string) string {
	if full {
		return err.Error()
	}
	var pe interface{ Public() string }
	if errors.As(err, &pe) {
		return pe.Public()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return generic + ": " + errno.Error()
	}
	return generic
}
