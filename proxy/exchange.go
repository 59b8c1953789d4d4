package proxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/budget"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

// exchange is one request inside an intercepted tunnel, from its first
// byte to its record.
type exchange struct {
	s       *Server
	t       *tunnel
	rec     *store.Record
	who     *identity.Identity
	blocked *rules.Rule // a block rule fired on the query
	// queryApprove is an approve rule that fired on the query.
	queryApprove *rules.Rule
	policy       *identity.Policy
	rules        *rules.Set
	secrets      [][]byte
	// hold is what the exchange holds of max_buffered_bytes.
	hold holding
	// prov is the provider of the tunnel's host: it finds the runner's
	// credential, sets the real key, reads the model and shapes errors.
	prov provider.Provider
	// ticket is the exchange's admission against its policy's budget.
	ticket *budget.Ticket
	// stripUsage: sessctl asked the upstream for usage the runner did not.
	stripUsage bool
	// begun waits for the in-flight note to be durable (see begin).
	begun func(context.Context) error
	tm    timing // for metrics and the span (observe.go)
}

// serveExchange handles one request inside an intercepted tunnel: pin the
// host, check the store can record, authenticate, apply policy and rules,
// swap the credential, forward, relay and record.
func (s *Server) serveExchange(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1) // Close waits for the exchange to be recorded
	defer s.wg.Done()
	t := tunnelFrom(r.Context())
	if t == nil {
		writeErrorFor(w, refNoTunnel, nil)
		return
	}
	ex := &exchange{s: s, t: t, prov: provider.For(s.providerOf(t.host)), rec: &store.Record{
		Kind:      store.KindExchange,
		SessionID: uuid.Must(uuid.NewV7()).String(),
		Start:     time.Now().UTC(),
		Conn:      t.conn(),
		Host:      t.host,
		Method:    r.Method,
		Path:      truncate(r.URL.Path, maxRecordedPath),
		Recording: store.RecordingFull,
		Provider:  string(s.providerOf(t.host)),
	}}
	ex.hold.b = s.mem
	defer ex.hold.release()
	ex.tm.parent = s.traceParent(r.Header)
	defer s.opt.Metrics.track()()

	// Pin the host: every request in a tunnel is for the tunnel's host, so
	// that the real key can never be steered elsewhere.
	if hostOnly(r.Host) != t.host || (r.URL.Host != "" && hostOnly(r.URL.Host) != t.host) {
		ex.refuse(w, refHostMismatch.with(hostOnly(r.Host), t.host))
		return
	}
	// Fail closed: no record, no traffic.
	if err := s.opt.Store.Healthy(); err != nil {
		s.storeUnavailable(w, err, ex.prov)
		return
	}
	if t.host == TokenHost && s.opt.Exchanger != nil {
		s.serveToken(w, r, ex)
		return
	}
	if !ex.authenticate(w, r) {
		return
	}
	// Client-declared metadata is read only from an authenticated client.
	ex.rec.Meta = clientMeta(r.Header, ex.rules)
	if !ex.prov.Forwards(r.URL.Path) {
		ex.refuse(w, refPathNotForwarded.with(t.host, r.URL.Path))
		return
	}
	who := ex.who.String()
	if !s.inflight.acquire(who) {
		w.Header().Set("Retry-After", "1")
		ex.refuse(w, refTooManyInFlight.with(s.opt.MaxInflight))
		return
	}
	defer s.inflight.release(who)
	if !ex.maskQuery(w, r) {
		return
	}
	if isWebSocket(r) {
		s.serveWebSocket(w, r, ex)
		return
	}
	if enc := contentEncoding(r.Header); enc != "" {
		// The rules cannot read a compressed prompt: refuse it rather
		// than forward what was not checked.
		ex.refuse(w, refCompressed.with(truncate(enc, 32)))
		return
	}
	if r.ContentLength > s.opt.MaxBody {
		ex.refuse(w, refRequestTooLarge.with(s.opt.MaxBody))
		return
	}
	// The whole body must arrive in bodyTimeout, wherever the headers
	// ended: a stalled upload does not hold a connection for ever.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	t0 := time.Now()
	body, err := ex.hold.readAll(http.MaxBytesReader(w, r.Body, s.opt.MaxBody), r.ContentLength, s.opt.MaxBody)
	ex.tm.wait(t0)
	if errors.Is(err, errOverBudget) {
		w.Header().Set("Connection", "close")
		ex.refuse(w, refBufferBudget.with(s.mem.max))
		return
	}
	if err != nil {
		// The read deadline stays expired and the connection closes:
		// the rest of a stalled body is not drained.
		w.Header().Set("Connection", "close")
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			ex.refuse(w, refRequestTooLarge.with(s.opt.MaxBody))
			return
		}
		ex.refuse(w, refBodyIncomplete)
		return
	}
	rc.SetReadDeadline(time.Time{})
	ex.rec.Model = ex.prov.Model(r, body)
	if !ex.checkModel(w, r, body) {
		return
	}
	res := ex.rules.Request(body)
	ex.addHits(res)
	ex.rec.RequestBody = res.Body
	if res.Block != nil {
		ex.refuse(w, forRule(res.Block))
		return
	}
	if res.Approve == nil {
		res.Approve = ex.queryApprove
	}
	if why, ok := ex.needsApproval(res); ok && !ex.approve(w, r, why, res.Body) {
		return
	}
	if !ex.admitBudget(w, r) {
		return
	}
	if !ex.begin(w, r) {
		return
	}
	if asksToStream(res.Body) {
		ex.s.opt.Store.Hurry()
	}
	ex.forward(w, r, res.Body)
}

// begin notes the exchange as in flight before anything is forwarded; if
// the note cannot be queued (the store is failing or closed), nothing is
// (fail closed). The note's commit runs while the request is forwarded:
// awaitBegun makes it durable before the runner sees an answer byte, so
// one fsync, not two, waits on the request path.
func (ex *exchange) begin(w http.ResponseWriter, r *http.Request) bool {
	// Checked again: the store may have failed while this request was
	// read or held for approval.
	if err := ex.s.opt.Store.Healthy(); err != nil {
		ex.s.storeUnavailable(w, err, ex.prov)
		return false
	}
	wait, err := ex.s.opt.Store.BeginQueued(r.Context(), ex.rec)
	if err != nil {
		ex.s.storeUnavailable(w, err, ex.prov)
		return false
	}
	ex.begun = wait
	return true
}

// asksToStream reports whether a request body seems to ask for a streamed
// answer ("stream": true, as the OpenAI and Anthropic APIs spell it). A
// false positive costs one early commit of the in-flight note; a false
// negative only lets the first answer byte wait for it.
func asksToStream(body []byte) bool {
	const key = `"stream"`
	for {
		i := bytes.Index(body, []byte(key))
		if i < 0 {
			return false
		}
		body = body[i+len(key):]
		rest, ok := bytes.CutPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte(":"))
		if ok && bytes.HasPrefix(bytes.TrimLeft(rest, " \t\r\n"), []byte("true")) {
			return true
		}
	}
}

// awaitBegun returns once the in-flight note of a forwarded exchange is
// durable. Answers whose record is appended before their first byte (the
// whole, masked ones) need not call it: the record commits after the note.
func (ex *exchange) awaitBegun(ctx context.Context) error {
	if ex.begun == nil {
		return nil
	}
	return ex.begun(context.WithoutCancel(ctx))
}

// storeUnavailable refuses a request that cannot be recorded (fail closed).
func (s *Server) storeUnavailable(w http.ResponseWriter, err error, p provider.Provider) {
	s.unavailErrs.log(s.log, "refusing traffic: store cannot record", err)
	s.opt.Metrics.storeUnavailable.Inc()
	writeErrorFor(w, refStoreUnavailable, p)
}

// authenticate decides who the runner is and which policy applies. A
// credential given on CONNECT (Proxy-Authorization) wins over the one in
// the request's headers (where the provider's clients put it), which is
// then ignored (and never forwarded).
func (ex *exchange) authenticate(w http.ResponseWriter, r *http.Request) bool {
	cred := ex.t.proxyCred
	if cred == "" {
		cred = ex.prov.Credential(r.Header)
	}
	id, err := ex.s.opt.Auth.Authenticate(r.Context(), cred)
	if errors.Is(err, identity.ErrIssuerUnavailable) {
		// sessctl could not check the token: that says nothing of the
		// runner, so the refusal is retryable-looking 503, not 401.
		ex.refuse(w, refIssuerDown)
		return false
	}
	if err != nil {
		if cred != "" {
			ex.rec.Identity.TokenHash = identity.HashToken(cred)
		}
		ex.refuse(w, refBadCredential.with(safeAuthReason(err)))
		return false
	}
	ex.rec.Identity = store.Identity{
		Method: id.Method, Runner: id.Runner, Issuer: id.Issuer, Subject: id.Subject,
		TokenHash: id.TokenHash, Claims: id.Claims,
	}
	ex.who = id
	ex.policy = identity.Match(ex.s.opt.Policies, id)
	ex.rules = ex.s.opt.Rules()
	if ex.policy != nil {
		ex.rec.Identity.Policy = ex.policy.Name
		if ex.policy.Record == identity.RecordMetadata {
			ex.rec.Recording = store.RecordingMetadata
		}
		if len(ex.policy.Rules) > 0 {
			ex.rules = ex.rules.Subset(ex.policy.Rules)
		}
		if ex.policy.Deny {
			ex.refuse(w, refPolicyDenied.with(ex.policy.Name))
			return false
		}
	}
	return true
}

// safeAuthReason returns the part of an authentication error that is safe
// to show the runner: never the token.
func safeAuthReason(err error) string {
	var ae *identity.AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return "authentication failed"
}

// key returns the real API key for this exchange: the key of the
// provider of the tunnel's host, named by the policy (its default key
// without one). Keys are looked up under that provider only: a policy's
// key that the provider lacks is no key (the request is refused), never
// another provider's key of that name. ok is false without a key, and why
// says which one is missing.
func (ex *exchange) key() (key, why string, ok bool) {
	name := ""
	if ex.policy != nil {
		name = ex.policy.Key
	}
	p := ex.prov.Name()
	if k, ok := ex.s.opt.Keys.Key(p, name); ok {
		return k, "", true
	}
	if name == "" {
		return "", "no default key for provider " + string(p), false
	}
	return "", "policy " + ex.policy.Name + " picks key " + name + ", which provider " + string(p) + " does not have", false
}

// refuse answers with a provider-shaped error and records the refusal:
// nothing was forwarded.
func (ex *exchange) refuse(w http.ResponseWriter, r refusal) {
	ex.rec.Kind = store.KindRefused
	ex.fail(w, r)
}

// fail answers with a provider-shaped error and records the exchange. A
// refusal before authentication copies only bounded fields, and past its
// source's rate is merged into a summary (see RefusalLimits).
func (ex *exchange) fail(w http.ResponseWriter, r refusal) {
	writeErrorFor(w, r, ex.prov)
	ex.tm.errType = r.typ
	if ex.who == nil && ex.rec.Kind == store.KindRefused {
		boundRefusal(ex.rec)
		ex.rec.Status, ex.rec.Outcome = r.status, r.outcome
		if !ex.s.refusals.admit(ex.rec.Conn.Client, ex.rec.Host, r.code, ex.rec) {
			// Counted (metrics, summary), not recorded on its own.
			ex.s.opt.Metrics.refusalsMerged.Inc()
			ex.observe(r.status, r.outcome, nil)
			return
		}
	}
	ex.finish(context.Background(), r.status, r.outcome, r.msg)
}

// finish completes and appends the record. It reports whether the record
// is durable.
func (ex *exchange) finish(ctx context.Context, status int, outcome store.Outcome, reason string) bool {
	r := ex.rec
	r.End = time.Now().UTC()
	r.Status = status
	r.Outcome = outcome
	r.Reason = reason
	answer := r.ResponseBody
	if r.Recording == store.RecordingMetadata {
		r.RequestBody, r.ResponseBody = nil, nil
	}
	key := ex.s.opt.Store.SecretKey()
	for _, sec := range ex.secrets {
		r.SecretHMACs = append(r.SecretHMACs, rules.SecretHMAC(key, sec))
	}
	ex.account(outcome)
	_, err := ex.s.opt.Store.Append(context.WithoutCancel(ctx), r)
	ex.observe(status, outcome, answer)
	if err != nil {
		ex.s.recordErrs.log(ex.s.log, "cannot record exchange", err, "session", r.SessionID)
		ex.s.opt.Metrics.recordErrors.Inc()
		return false
	}
	return true
}

func (ex *exchange) addHits(res rules.Result) {
	for _, h := range res.Hits {
		ex.rec.Rules = mergeHit(ex.rec.Rules, store.RuleHit{Name: h.Rule, Action: string(h.Action), Scope: h.Scope, Count: h.Count})
	}
	ex.secrets = append(ex.secrets, res.Secrets...)
}

func mergeHit(hits []store.RuleHit, h store.RuleHit) []store.RuleHit {
	for i := range hits {
		if hits[i].Name == h.Name && hits[i].Scope == h.Scope && hits[i].Action == h.Action {
			hits[i].Count += h.Count
			return hits
		}
	}
	return append(hits, h)
}

// contentEncoding returns the request's content codings other than
// identity, all of them (several headers, comma lists), or "".
func contentEncoding(h http.Header) string {
	var encs []string
	for _, v := range h.Values("Content-Encoding") {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" && !strings.EqualFold(e, "identity") {
				encs = append(encs, e)
			}
		}
	}
	return strings.Join(encs, ", ")
}

// bodyTimeout bounds reading one request body.
const bodyTimeout = 2 * time.Minute

// maskQuery applies the request rules to the query string, to each
// decoded name and value: a mask rewrites the query, a block refuses the
// request. The record keeps the masked query. It reports whether the
// request may go on.
func (ex *exchange) maskQuery(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery == "" {
		return true
	}
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		ex.refuse(w, refBadQuery)
		return false
	}
	masked, fired := url.Values{}, false
	for k, vs := range vals {
		mk := ex.scanText(k)
		for _, v := range vs {
			masked.Add(mk, ex.scanText(v))
		}
	}
	for _, h := range ex.rec.Rules {
		if h.Scope == rules.ScopeRequest {
			fired = true
		}
	}
	if ex.blocked != nil {
		ex.refuse(w, forRule(ex.blocked))
		return false
	}
	if fired {
		r.URL.RawQuery = masked.Encode()
	}
	if ex.rec.Extra == nil {
		ex.rec.Extra = map[string]string{}
	}
	ex.rec.Extra["query"] = truncate(r.URL.RawQuery, 4096)
	return true
}

// scanText applies the request rules to a short text (a query name or
// value), noting hits and the first block rule.
func (ex *exchange) scanText(s string) string {
	res := ex.rules.Request([]byte(s))
	ex.addHits(res)
	if res.Block != nil && ex.blocked == nil {
		ex.blocked = res.Block
	}
	if res.Approve != nil && ex.queryApprove == nil {
		ex.queryApprove = res.Approve
	}
	return string(res.Body)
}

// needsApproval reports whether a request needs a human, and why: an
// approve rule fired on it, or its policy asks for approval always.
func (ex *exchange) needsApproval(res rules.Result) (string, bool) {
	switch {
	case res.Approve != nil:
		return "rule " + res.Approve.Name, true
	case ex.policy != nil && ex.policy.NeedsApproval():
		return "policy " + ex.policy.Name, true
	}
	return "", false
}

// Bounds of what an exchange copies from the request into its record.
const (
	maxRecordedPath = 2048
	maxMetaHeaders  = 32
	maxMetaName     = 64
	maxMetaValue    = 256
)

// clientMeta collects Sessctl-Meta-* headers: client-declared, unverified
// metadata, bounded in count, name and value size, with secrets masked.
// Names longer than maxMetaName are skipped.
func clientMeta(h http.Header, rs *rules.Set) map[string]string {
	var m map[string]string
	for k, v := range h {
		name, ok := strings.CutPrefix(k, "Sessctl-Meta-")
		if !ok || len(v) == 0 || name == "" || len(name) > maxMetaName {
			continue
		}
		if m == nil {
			m = make(map[string]string)
		}
		if len(m) >= maxMetaHeaders {
			break
		}
		val := truncate(v[0], maxMetaValue)
		m[strings.ToLower(name)] = string(rs.Request([]byte(val)).Body)
	}
	return m
}

// begin notes r as in flight and waits until the note is durable: for
// WebSocket turns, whose answer events may reach the runner as soon as the
// upstream sends them.
func begin(ctx context.Context, st Recorder, r *store.Record) error {
	wait, err := st.BeginQueued(ctx, r)
	if err != nil {
		return err
	}
	return wait(ctx)
}
