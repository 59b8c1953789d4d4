package store

import (
	"time"

	"github.com/sessctl/sessctl/internal/claims"
)

// Kind is what a record is about: an exchange, a refused request, the
// log's genesis, a prune... It is stored as its string in the leaf JSON.
type Kind string

// Record kinds, the values of [Kind].
const (
	KindGenesis  Kind = "genesis"
	KindExchange Kind = "exchange"
	KindRefused  Kind = "refused"
	KindConnect  Kind = "connect"
	KindApproval Kind = "approval"
	KindPrune    Kind = "prune"
	KindShutdown Kind = "shutdown"
	KindRestore  Kind = "restore"
	KindAborted  Kind = "aborted"
)

// Kinds lists every record kind, exchanges first, in the order the UI
// offers them.
var Kinds = []Kind{KindExchange, KindRefused, KindConnect, KindApproval, KindGenesis,
	KindPrune, KindShutdown, KindRestore, KindAborted}

// Recording says whether a record's bodies are stored.
type Recording string

// Recording modes, the values of [Recording].
const (
	RecordingFull     Recording = "full"     // bodies stored, with commitments
	RecordingMetadata Recording = "metadata" // no bodies, no commitments
)

// Recordings lists the recording modes.
var Recordings = []Recording{RecordingFull, RecordingMetadata}

// Outcome is how an exchange ended. It is stored as its string in the
// leaf JSON.
type Outcome string

// Outcomes of an exchange, the values of [Outcome].
const (
	OutcomeForwarded       Outcome = "forwarded"
	OutcomeBlocked         Outcome = "blocked"
	OutcomeDenied          Outcome = "denied"
	OutcomeUnauthenticated Outcome = "unauthenticated"
	OutcomeApprovalDenied  Outcome = "approval_denied"
	OutcomeApprovalTimeout Outcome = "approval_timeout"
	OutcomeUpstreamError   Outcome = "upstream_error"
	OutcomeClientGone      Outcome = "client_gone"
	OutcomeAborted         Outcome = "aborted"
	OutcomeRefused         Outcome = "refused"
	OutcomeSpliced         Outcome = "spliced"
	OutcomePending         Outcome = "pending"
)

// Outcomes lists every outcome, in the order the UI offers them.
var Outcomes = []Outcome{OutcomeForwarded, OutcomeBlocked, OutcomeDenied, OutcomeUnauthenticated,
	OutcomeApprovalDenied, OutcomeApprovalTimeout, OutcomeUpstreamError, OutcomeClientGone,
	OutcomeAborted, OutcomeRefused, OutcomeSpliced, OutcomePending}

// Record is one entry of the log as the proxy hands it to Append. The store
// assigns Seq and Prev, replaces the bodies with salted commitments, and
// encodes the result as the leaf bytes that are hashed (see FORMAT.md).
type Record struct {
	Seq       uint64    `json:"seq"`
	Prev      string    `json:"prev"` // hex SHA-256 leaf hash of record Seq-1
	Kind      Kind      `json:"kind"`
	SessionID string    `json:"session_id,omitempty"` // uuid v7
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`

	Identity Identity          `json:"identity"`
	Meta     map[string]string `json:"meta_unverified,omitempty"` // client-declared Sessctl-Meta-* headers

	Conn Conn   `json:"conn"`
	Host string `json:"host,omitempty"`
	// Provider is the provider of Host (openai, anthropic, azure-openai):
	// the API the exchange spoke.
	Provider string `json:"provider,omitempty"`
	Method   string `json:"method,omitempty"`
	Path     string `json:"path,omitempty"`
	Model    string `json:"model,omitempty"`
	Status   int    `json:"status,omitempty"`
	// Outcome is one of the Outcome* constants.
	Outcome Outcome `json:"outcome,omitempty"`
	// Reason is a short human explanation (error text with no secrets).
	Reason string `json:"reason,omitempty"`

	Rules    []RuleHit `json:"rules,omitempty"`
	Approval *Approval `json:"approval,omitempty"`
	// Recording is "full" or "metadata" (bodies not stored).
	Recording Recording `json:"recording,omitempty"`

	// Request and Response commit to the bodies; filled by the store from
	// RequestBody and ResponseBody.
	Request  *Commitment `json:"request,omitempty"`
	Response *Commitment `json:"response,omitempty"`

	// Deltas keep each streamed delta's arrival offset and size.
	Deltas []Delta `json:"deltas,omitempty"`
	// SecretHMACs are HMAC-SHA256 (hex) of each masked value under the
	// log's secret key; never the secret itself.
	SecretHMACs []string `json:"secret_hmacs,omitempty"`
	// Extra carries kind-specific fields (genesis origin and key, prune
	// range, connect byte counts...).
	Extra map[string]string `json:"extra,omitempty"`

	// Origin names the log a record was read from when it comes from a
	// fleet's central copy (package central), where records of several
	// logs mix. It is never part of a leaf: EncodeLeaf refuses it.
	Origin string `json:"origin,omitempty"`

	// RequestBody and ResponseBody are the bodies as the store must keep
	// them (already masked). They are not part of the leaf.
	RequestBody  []byte `json:"-"`
	ResponseBody []byte `json:"-"`
}

// Identity is who made a request, as verified by sessctl.
type Identity struct {
	Method    string            `json:"method,omitempty"` // runner_token | oidc | session_token | none
	Runner    string            `json:"runner,omitempty"`
	Issuer    string            `json:"issuer,omitempty"`
	Subject   string            `json:"subject,omitempty"`
	TokenHash string            `json:"token_sha256,omitempty"`
	Claims    map[string]string `json:"claims,omitempty"`
	Policy    string            `json:"policy,omitempty"`
}

// Caller names who made the request: the runner, else the CI actor claim,
// else the OIDC subject (as identity.Identity.Caller does).
func (id Identity) Caller() string { return claims.Caller(id.Runner, id.Subject, id.Claims) }

// Claim returns the first non-empty claim among names, or "".
func (id Identity) Claim(names ...string) string { return claims.First(id.Claims, names...) }

// Conn describes the client connection an exchange arrived on.
type Conn struct {
	ID     string `json:"id,omitempty"`
	Mode   string `json:"mode,omitempty"` // explicit | transparent
	Client string `json:"client,omitempty"`
	// Transport is "http" or "websocket".
	Transport string `json:"transport,omitempty"`
}

// RuleHit is one rule that fired on an exchange.
type RuleHit struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	Scope  string `json:"scope"`
	Count  int    `json:"count"`
}

// Approval is a human decision on a held request.
type Approval struct {
	ID       string    `json:"id"`
	Decision string    `json:"decision"` // pending | approved | denied | timeout
	By       string    `json:"by,omitempty"`
	At       time.Time `json:"at,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// Commitment is SHA-256(domain tag ‖ salt ‖ body) in hex, with the body size.
type Commitment struct {
	Hash string `json:"sha256"`
	Size int64  `json:"size"`
}

// Delta is one streamed chunk's arrival offset from Start and its size.
type Delta struct {
	OffsetMS int64 `json:"t"`
	Size     int   `json:"n"`
}
