package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"syscall"
)

// health is the body of /healthz.
type health struct {
	Status string `json:"status"`
	// Reason says why the gate is closed (status "unavailable").
	Reason string `json:"reason,omitempty"`
	// Warnings name conditions that will close the gate if they go on
	// (a disk near its reserve), while it is still open.
	Warnings []string `json:"warnings,omitempty"`
}

// healthz answers 200 {"status":"ok"} while sessctl can do its job and 503
// with the reason otherwise. The reasons and warnings of a store error
// name files; only an authenticated caller (admin token or login) sees
// them in full, anyone else gets the error class without paths.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, authErr := h.authenticate(r)
	full := authErr == nil
	out := health{Status: "ok"}
	status := http.StatusOK
	if h.o.Health != nil {
		if err := h.o.Health(); err != nil {
			status = http.StatusServiceUnavailable
			out.Status = "unavailable"
			out.Reason = publicReason(err, full, "session log unavailable")
		}
	}
	if h.o.Warnings != nil {
		for _, err := range h.o.Warnings() {
			out.Warnings = append(out.Warnings, publicReason(err, full, "warning (authenticate for details)"))
		}
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(out)
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
