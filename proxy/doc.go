// Package proxy is sessctl's data path: the explicit (CONNECT) and
// transparent listeners, the egress decision (intercept, passthrough or
// refuse), TLS termination with leaves from the internal CA, runner
// authentication and policy, request and response rules, the credential
// swap, the streaming relay to the upstream, and the record of each
// exchange.
//
// The stages live one per file: connect.go (explicit listener and egress
// decision), intercept.go (TLS termination and the inner HTTP server),
// exchange.go (one request: pin, authenticate, decide, forward), upstream.go
// (the shared transport), relay.go (the answer, streamed and masked),
// record.go (building and appending records), splice.go (passthrough) and
// errors.go (OpenAI-shaped refusals).
package proxy
