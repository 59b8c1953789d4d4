package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/store"
)

// MaxPageSize bounds the records one API listing returns; clients page on
// with the returned cursor.
const MaxPageSize = 1000

// defaultPageSize is the page size when a listing names no limit.
const defaultPageSize = 100

// maxDecisionBody bounds a decision request body.
const maxDecisionBody = 64 << 10

type principalKey struct{}

func withPrincipal(ctx context.Context, p *principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	return p
}

// APIError is the body of every API error response.
type APIError struct {
	Error string `json:"error"`
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, APIError{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}

// SessionList is the body of GET /api/v1/sessions.
type SessionList struct {
	Sessions []*store.Record `json:"sessions"`
	// Next is the cursor for the following page (the after parameter),
	// empty on the last page.
	Next string `json:"next,omitempty"`
}

// SessionDetail is one record with its bodies: the body of
// GET /api/v1/sessions/{id} and of `sessctl sessions show --json`.
type SessionDetail struct {
	*store.Record
	// Prompt and Answer are the stored (masked) bodies, null when not
	// recorded or pruned.
	Prompt *string `json:"prompt"`
	Answer *string `json:"answer"`
	// Related are the other records of the same session (approval
	// decisions, the exchange an approval belongs to), oldest first.
	Related []*store.Record `json:"related,omitempty"`
	// Verified tells whether the record is in the signed log, when that
	// could be checked; VerifyError says why it could not.
	Verified    *bool  `json:"verified,omitempty"`
	VerifyError string `json:"verify_error,omitempty"`
}

// relatedWindow is how far around a record Detail looks for the other
// records of its session (approval records are written while the request
// is held, within the approval timeout).
const relatedWindow = 15 * time.Minute

// Detail returns the record id (session id or sequence number) with its
// bodies and the other records of its session. verify may be nil; it is
// not called for a record of a fleet (Origin set).
func Detail(src SessionSource, id string, verify func(uint64) (bool, error)) (*SessionDetail, error) {
	rec, req, resp, err := src.Get(id)
	if err != nil {
		return nil, err
	}
	d := &SessionDetail{Record: rec, Prompt: strPtr(req), Answer: strPtr(resp)}
	if rec.SessionID != "" {
		q := Query{Session: rec.SessionID, Since: rec.Start.Add(-relatedWindow), Until: rec.End.Add(relatedWindow), Limit: 100}
		var rel []*store.Record
		if _, err := Find(src, q, func(r *store.Record) error {
			if r.Seq != rec.Seq {
				rel = append(rel, r)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		for i, j := 0, len(rel)-1; i < j; i, j = i+1, j-1 {
			rel[i], rel[j] = rel[j], rel[i]
		}
		d.Related = rel
	}
	// verify checks this process's own log; a record read from a fleet's
	// central copy (Origin set) is checked by `sessctl verify --central`.
	if verify != nil && rec.Origin == "" {
		ok, err := verify(rec.Seq)
		d.Verified = &ok
		if err != nil {
			d.VerifyError = err.Error()
		}
	}
	return d, nil
}

func strPtr(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func (h *handler) needSessions(w http.ResponseWriter) bool {
	if h.o.Sessions == nil {
		apiError(w, http.StatusServiceUnavailable, "no session log is attached to the admin API")
		return false
	}
	return true
}

func (h *handler) apiSessions(w http.ResponseWriter, r *http.Request) {
	if !h.needSessions(w) {
		return
	}
	q, err := ParseQuery(r.URL.Query(), h.o.Now())
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	if q.Limit == 0 {
		q.Limit = defaultPageSize
	}
	q.Limit = min(q.Limit, MaxPageSize)
	out := SessionList{Sessions: []*store.Record{}}
	out.Next, err = Find(h.o.Sessions, q, func(rec *store.Record) error {
		out.Sessions = append(out.Sessions, rec)
		return nil
	})
	if err != nil {
		h.log.Error("listing sessions", "err", err)
		apiError(w, http.StatusInternalServerError, "listing sessions failed")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) apiSession(w http.ResponseWriter, r *http.Request) {
	if !h.needSessions(w) {
		return
	}
	d, err := Detail(h.o.Sessions, r.PathValue("id"), h.o.Verify)
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, "no such session or record")
		return
	}
	if err != nil {
		h.log.Error("reading a session", "err", err)
		apiError(w, http.StatusInternalServerError, "reading the session failed")
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// apiAnswer serves the stored answer's bytes exactly, for the replay (the
// delta sizes count bytes, which a JSON string cannot carry faithfully).
func (h *handler) apiAnswer(w http.ResponseWriter, r *http.Request) {
	if !h.needSessions(w) {
		return
	}
	_, _, resp, err := h.o.Sessions.Get(r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, "no such session or record")
		return
	}
	if err != nil {
		h.log.Error("reading a session", "err", err)
		apiError(w, http.StatusInternalServerError, "reading the session failed")
		return
	}
	if resp == nil {
		apiError(w, http.StatusNotFound, "no answer recorded")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
	w.Header().Set("Content-Disposition", "attachment")
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	w.Write(resp)
}

// apiSnapshot streams a consistent copy of the log database, which the
// client verifies on its side: it trusts nothing the server computed.
func (h *handler) apiSnapshot(w http.ResponseWriter, r *http.Request) {
	if h.o.Snapshot == nil {
		apiError(w, http.StatusServiceUnavailable, "no session log configured")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="sessions-snapshot.db"`)
	if _, err := h.o.Snapshot(w); err != nil {
		// The status is sent; a truncated file fails to open or verify.
		h.log.Warn("writing snapshot", "err", err)
	}
}

func (h *handler) apiExport(w http.ResponseWriter, r *http.Request) {
	if !h.needSessions(w) {
		return
	}
	var o ExportOptions
	if s := r.URL.Query().Get("from"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("from: %q is not a sequence number", s))
			return
		}
		o.From = n
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("limit: %q is not a non-negative integer", s))
			return
		}
		o.Limit = n
	}
	o.Bodies = r.URL.Query().Get("bodies") == "1" || r.URL.Query().Get("bodies") == "true"
	w.Header().Set("Content-Type", "application/x-ndjson")
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	if _, err := Export(r.Context(), fw, h.o.Sessions, o); err != nil {
		// The status is sent; end the stream with an error line a reader
		// cannot mistake for a record.
		h.log.Error("export", "err", err)
		json.NewEncoder(w).Encode(APIError{Error: err.Error()})
	}
}

// flushWriter flushes after every write so an export streams.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		f.rc.Flush()
	}
	return n, err
}

func (h *handler) needApprovals(w http.ResponseWriter) bool {
	if h.o.Approvals == nil {
		apiError(w, http.StatusServiceUnavailable, "no approval queue is attached to the admin API")
		return false
	}
	return true
}

// ApprovalList is the body of GET /api/v1/approvals.
type ApprovalList struct {
	Approvals []approval.Request `json:"approvals"`
}

func (h *handler) apiApprovals(w http.ResponseWriter, r *http.Request) {
	if !h.needApprovals(w) {
		return
	}
	writeJSON(w, http.StatusOK, ApprovalList{Approvals: h.o.Approvals.Pending()})
}

func (h *handler) apiApproval(w http.ResponseWriter, r *http.Request) {
	if !h.needApprovals(w) {
		return
	}
	req, ok := h.o.Approvals.Get(r.PathValue("id"))
	if !ok {
		apiError(w, http.StatusNotFound, "no pending approval with this id")
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// DecisionRequest is the body of POST /api/v1/approvals/{id}/approve|deny.
type DecisionRequest struct {
	Reason string `json:"reason"`
}

func (h *handler) apiDecide(decision string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.needApprovals(w) {
			return
		}
		var body DecisionRequest
		if r.ContentLength != 0 {
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxDecisionBody))
			if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				apiError(w, http.StatusBadRequest, "body: want JSON {\"reason\": \"...\"}")
				return
			}
		}
		d, status, err := h.decide(r.Context(), r.PathValue("id"), decision, body.Reason)
		if err != nil {
			apiError(w, status, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, d)
	}
}

// decide applies a decision by the request's admin, mapping queue errors
// to HTTP statuses.
func (h *handler) decide(ctx context.Context, id, decision, reason string) (approval.Decision, int, error) {
	p := principalFrom(ctx)
	d, err := h.o.Approvals.Decide(id, decision, p.admin, reason)
	switch {
	case err == nil:
		h.log.Info("approval decided", "id", id, "decision", d.Decision, "by", d.By)
		return d, http.StatusOK, nil
	case errors.Is(err, approval.ErrUnknownID):
		return d, http.StatusNotFound, errors.New("no pending approval with this id (it may have timed out)")
	case errors.Is(err, approval.ErrAlreadyDecided):
		return d, http.StatusConflict, fmt.Errorf("already decided: %s", d.Decision)
	case errors.Is(err, approval.ErrReasonRequired):
		return d, http.StatusBadRequest, errors.New("a denial needs a reason")
	case errors.Is(err, approval.ErrSelfApproval):
		return d, http.StatusForbidden, errors.New("the requester cannot decide its own request")
	case errors.Is(err, approval.ErrUnavailable):
		h.log.Warn("approval not decided", "id", id, "err", err)
		return d, http.StatusServiceUnavailable, approval.ErrUnavailable
	case errors.Is(err, approval.ErrNoAnswer):
		h.log.Warn("approval not decided", "id", id, "err", err)
		return d, http.StatusGatewayTimeout, err
	default:
		return d, http.StatusBadRequest, err
	}
}

// sseHeartbeat is how often an idle event stream sends a comment, so
// proxies and browsers keep it open.
const sseHeartbeat = 20 * time.Second

// apiApprovalStream streams queue events as server-sent events: first a
// "pending" event with the current list, then "held" and "decided" events
// as they happen. A subscriber that falls behind is disconnected; the
// browser's EventSource reconnects and gets a fresh list.
func (h *handler) apiApprovalStream(w http.ResponseWriter, r *http.Request) {
	if !h.needApprovals(w) {
		return
	}
	rc := http.NewResponseController(w)
	ctx := r.Context()
	events := h.o.Approvals.Subscribe(ctx)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if _, err := io.WriteString(w, "retry: 3000\n\n"); err != nil {
		return
	}
	if err := send("pending", ApprovalList{Approvals: h.o.Approvals.Pending()}); err != nil {
		return
	}
	tick := time.NewTicker(sseHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if err := send(ev.Type, ev); err != nil {
				return
			}
		case <-tick.C:
			if _, err := io.WriteString(w, ": ping\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// Prover makes inclusion proofs; *store.Store and *store.Reader implement
// it.
type Prover interface {
	Prove(seq uint64) ([]byte, error)
}

// ProofVerifier returns an Options.Verify function that proves record seq
// against the newest signed checkpoint and checks the proof with pubkey
// (the log's note verifier key; "" trusts the key the proof names, which
// shows consistency but not who signed).
func ProofVerifier(p Prover, pubkey string) func(seq uint64) (bool, error) {
	return func(seq uint64) (bool, error) {
		b, err := p.Prove(seq)
		if err != nil {
			return false, err
		}
		if _, err := store.VerifyProof(b, pubkey); err != nil {
			return false, err
		}
		return true, nil
	}
}
