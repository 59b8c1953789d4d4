package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
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

// refusal is one kind of error sessctl answers a runner with: the HTTP
// status, the OpenAI-shaped error's type and code, the outcome recorded
// for it, and its message (a fmt template when the refusal takes
// arguments). README's error table lists every (status, type) below, and
// TestREADMEErrorTable keeps the two the same.
type refusal struct {
	status  int
	typ     string
	code    string        // empty: the code is the name of the rule that fired
	outcome store.Outcome // empty: no exchange record is written for it
	msg     string
}

// The refusals. Every one is in allRefusals.
var (
	refNoTunnel        = refusal{http.StatusInternalServerError, errBadRequest, "no_tunnel", "", "request outside a tunnel"}
	refNotProxyRequest = refusal{http.StatusBadRequest, errBadRequest, "not_a_proxy_request", "", "sessctl is an HTTPS proxy: send CONNECT (set HTTPS_PROXY)"}
	refPlainHTTP       = refusal{http.StatusForbidden, errForbidden, "plain_http", "", "plain HTTP to %s is not allowed through sessctl; use HTTPS"}
	refPlainHTTPS      = refusal{http.StatusForbidden, errForbidden, "plain_http", "", "plain HTTP to %[1]s is refused: use https://%[1]s"}
	refBadConnect      = refusal{http.StatusBadRequest, errForbidden, "egress_refused", "", "malformed CONNECT target %.100q"}
	refEgressPort      = refusal{http.StatusForbidden, errForbidden, "egress_refused", "", "egress to port %s is not allowed"}
	refEgressHost      = refusal{http.StatusForbidden, errForbidden, "egress_refused", "", "egress to %s is not allowed"}

	refHostMismatch     = refusal{http.StatusMisdirectedRequest, errForbidden, "host_mismatch", store.OutcomeDenied, "request for %q inside a tunnel to %q"}
	refIssuerDown       = refusal{http.StatusServiceUnavailable, errUnavailable, "issuer_unavailable", store.OutcomeUnauthenticated, "sessctl cannot reach the token issuer to check this credential right now"}
	refBadCredential    = refusal{http.StatusUnauthorized, errUnauthenticated, "invalid_runner_credential", store.OutcomeUnauthenticated, "sessctl: %s; present a runner token or CI OIDC token as the bearer credential"}
	refBadOIDCToken     = refusal{http.StatusUnauthorized, errUnauthenticated, "invalid_oidc_token", store.OutcomeUnauthenticated, "sessctl: %s; present a valid CI OIDC token as the bearer credential"}
	refPolicyDenied     = refusal{http.StatusForbidden, errForbidden, "policy_denied", store.OutcomeDenied, "policy %s denies this identity"}
	refTooManyInFlight  = refusal{http.StatusTooManyRequests, errRateLimited, "too_many_in_flight", store.OutcomeBlocked, "this identity already has %d requests in progress through sessctl"}
	refCompressed       = refusal{http.StatusUnsupportedMediaType, errBadRequest, "compressed_request", store.OutcomeBlocked, "sessctl does not accept compressed request bodies (Content-Encoding %s)"}
	refRequestTooLarge  = refusal{http.StatusRequestEntityTooLarge, errTooLarge, "request_too_large", store.OutcomeBlocked, "request body larger than max_body (%d bytes)"}
	refBodyIncomplete   = refusal{http.StatusRequestTimeout, errBadRequest, "request_body_incomplete", store.OutcomeClientGone, "the request body did not arrive whole in time"}
	refBadQuery         = refusal{http.StatusBadRequest, errBadRequest, "bad_query", store.OutcomeBlocked, "malformed query string"}
	refCannotForward    = refusal{http.StatusBadRequest, errBadRequest, "bad_request", store.OutcomeBlocked, "cannot forward this request"}
	refTokenNotFound    = refusal{http.StatusNotFound, errBadRequest, "not_found", store.OutcomeBlocked, "sessctl.internal serves only POST %s"}
	refAnswerBlocked    = refusal{http.StatusForbidden, errPolicyViolation, "", store.OutcomeBlocked, "answer blocked by sessctl rule %s"}
	refAnswerThinking   = refusal{http.StatusForbidden, errPolicyViolation, "thinking_not_edited", store.OutcomeBlocked, "sessctl rule %s matched inside a thinking block, which sessctl does not edit (it is signed): the answer is withheld"}
	refRuleBlocked      = refusal{http.StatusForbidden, errPolicyViolation, "", store.OutcomeBlocked, "request blocked by sessctl rule %s"}
	refNoUpstreamKey    = refusal{http.StatusServiceUnavailable, errUnavailable, "no_upstream_key", store.OutcomeBlocked, "sessctl has no upstream API key configured for this request (%s)"}
	refStoreUnavailable = refusal{http.StatusServiceUnavailable, errUnavailable, "store_unavailable", store.OutcomeBlocked, "sessctl cannot record this exchange right now; try again later"}
	refNotRecorded      = refusal{http.StatusServiceUnavailable, errUnavailable, "store_unavailable", "", "sessctl could not record this exchange"}
	refShuttingDown     = refusal{http.StatusServiceUnavailable, errUnavailable, "shutting_down", store.OutcomeBlocked, "sessctl is shutting down"}
	refPathNotForwarded = refusal{http.StatusForbidden, errForbidden, "path_not_forwarded", store.OutcomeBlocked, "sessctl forwards only the model API of %s, not %.100q"}
	refWebSocketPath    = refusal{http.StatusNotFound, errForbidden, "websocket_path", store.OutcomeBlocked, "sessctl carries WebSockets only on %s"}
	refInvalidEvent     = refusal{http.StatusBadRequest, errBadRequest, "invalid_event", store.OutcomeBlocked, "sessctl refuses this event: %v"}

	refApprovalNoQueue     = refusal{http.StatusForbidden, errPolicyViolation, "approval_required", store.OutcomeBlocked, "this request needs human approval (%s), and no approval queue is configured"}
	refApprovalUnavailable = refusal{http.StatusServiceUnavailable, errUnavailable, "approval_unavailable", store.OutcomeBlocked, "this request needs human approval (%s), and the approval queue cannot take it now"}
	refApprovalPending     = refusal{http.StatusForbidden, errApprovalPending, "approval_required", store.OutcomePending, "this request needs human approval (%s); approval id %s; send it again once approved"}
	refApprovalTimeout     = refusal{http.StatusForbidden, errApprovalTimeout, "approval_timeout", store.OutcomeApprovalTimeout, "no approver decided on this request in time (%s)"}
	refApprovalDenied      = refusal{http.StatusForbidden, errApprovalDenied, "approval_denied", store.OutcomeApprovalDenied, "an approver denied this request"}

	refUpstreamUnreachable   = refusal{http.StatusBadGateway, errUpstream, "upstream_unreachable", store.OutcomeUpstreamError, "sessctl could not reach %s"}
	refUpstreamWSUnreachable = refusal{http.StatusBadGateway, errUpstream, "upstream_unreachable", store.OutcomeUpstreamError, "sessctl could not open the WebSocket to %s"}
	refUpstreamEncoding      = refusal{http.StatusBadGateway, errUpstream, "upstream_encoding", store.OutcomeUpstreamError, "%v"}
	refUpstreamRead          = refusal{http.StatusBadGateway, errUpstream, "upstream_read", store.OutcomeUpstreamError, "reading the upstream answer failed"}
	refAnswerTooLarge        = refusal{http.StatusBadGateway, errTooLarge, "answer_too_large", store.OutcomeUpstreamError, "answer larger than max_body (%d bytes)"}
)

// allRefusals lists every refusal above, for the README check.
var allRefusals = []refusal{
	refNoTunnel, refNotProxyRequest, refPlainHTTP, refPlainHTTPS, refBadConnect, refEgressPort, refEgressHost,
	refHostMismatch, refIssuerDown, refBadCredential, refBadOIDCToken, refPolicyDenied, refTooManyInFlight,
	refCompressed, refRequestTooLarge, refBodyIncomplete, refBadQuery, refCannotForward, refTokenNotFound,
	refRuleBlocked, refAnswerBlocked, refAnswerThinking, refNoUpstreamKey, refStoreUnavailable, refNotRecorded, refShuttingDown, refPathNotForwarded, refWebSocketPath,
	refInvalidEvent, refApprovalNoQueue, refApprovalUnavailable, refApprovalPending, refApprovalTimeout,
	refApprovalDenied, refUpstreamUnreachable, refUpstreamWSUnreachable, refUpstreamEncoding, refUpstreamRead,
	refAnswerTooLarge,
}

// with fills the message template with args. The arguments are never
// read as a template themselves.
func (r refusal) with(args ...any) refusal {
	if len(args) > 0 {
		r.msg = fmt.Sprintf(r.msg, args...)
	}
	return r
}

// detail appends ": d" to the message when d is not empty.
func (r refusal) detail(d string) refusal {
	if d != "" {
		r.msg += ": " + d
	}
	return r
}

// forRule is refRuleBlocked for the rule that fired: its name is the
// error's code, its message (if any) ends the error's message.
func forRule(rule *rules.Rule) refusal {
	r := refRuleBlocked.with(rule.Name).detail(rule.Message)
	r.code = rule.Name
	return r
}

// forAnswerRule is refAnswerBlocked for the rule that fired in an answer.
func forAnswerRule(rule *rules.Rule) refusal {
	r := refAnswerBlocked.with(rule.Name).detail(rule.Message)
	r.code = rule.Name
	return r
}

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

// body encodes the refusal as an OpenAI-shaped error. The message must
// hold no secret.
func (r refusal) body() []byte {
	b, _ := json.Marshal(apiError{Error: apiErrorBody{Message: r.msg, Type: r.typ, Code: r.code}})
	return append(b, '\n')
}

// writeError sends an OpenAI-shaped refusal that SDKs will not retry
// (but for 429: too many requests in progress, which passes). It serves
// refusals made before sessctl knows the provider (CONNECT, plain HTTP).
func writeError(w http.ResponseWriter, r refusal) {
	writeErrorFor(w, r, nil)
}

// writeErrorFor sends a refusal shaped as provider p's errors (OpenAI's
// when p is nil), with X-Should-Retry, which the OpenAI and Anthropic SDKs
// both honour: false but for 429.
func writeErrorFor(w http.ResponseWriter, r refusal, p provider.Provider) {
	body := r.body()
	if p != nil {
		body = p.ErrorBody(r.status, r.typ, r.code, r.msg)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Should-Retry", strconv.FormatBool(r.status == http.StatusTooManyRequests))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(r.status)
	w.Write(body)
}
