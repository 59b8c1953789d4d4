package proxy

import (
	"net/http"
	"strings"

	"github.com/sessctl/sessctl/store"
)

// isWebSocket reports whether r asks to upgrade to a WebSocket.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// serveWebSocket refuses WebSocket upgrades: the Responses API WebSocket
// transport is not gated yet, and an ungated one must not pass.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, ex *exchange) {
	ex.refuse(w, http.StatusNotImplemented, errForbidden, "websocket_unsupported", store.OutcomeBlocked,
		"sessctl does not carry WebSocket connections yet; use HTTPS")
}
