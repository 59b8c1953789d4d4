package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error types a runner sees in the OpenAI-shaped error body.
const (
	errUnauthenticated = "sessctl_unauthenticated"
	errForbidden       = "sessctl_forbidden"
	errPolicyViolation = "sessctl_policy_violation"
	errApprovalDenied  = "sessctl_approval_denied"
	errApprovalTimeout = "sessctl_approval_timeout"
	errApprovalPending = "sessctl_approval_required"
	errUnavailable     = "sessctl_unavailable"
	errUpstream        = "sessctl_upstream_error"
	errBadRequest      = "sessctl_bad_request"
	errTooLarge        = "sessctl_too_large"
	errRateLimited     = "sessctl_rate_limited"
)

// apiError is the body OpenAI's API and SDKs use for errors.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// errorBody encodes an OpenAI-shaped error. The message must hold no secret.
func errorBody(typ, code, msg string) []byte {
	b, _ := json.Marshal(apiError{Error: apiErrorBody{Message: msg, Type: typ, Code: code}})
	return append(b, '\n')
}

// writeError sends an OpenAI-shaped refusal that SDKs will not retry
// (but for 429: too many requests in progress, which passes).
func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Should-Retry", strconv.FormatBool(status == http.StatusTooManyRequests))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(errorBody(typ, code, msg))
}
