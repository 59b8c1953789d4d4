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
	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

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

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, admin.APIError{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
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
	q, err := query.ParseQuery(r.URL.Query(), h.o.Now())
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	if q.Limit == 0 {
		q.Limit = defaultPageSize
	}
	q.Limit = min(q.Limit, admin.MaxPageSize)
	out := admin.SessionList{Sessions: []*store.Record{}}
	out.Next, err = query.Find(h.o.Sessions, q, func(rec *store.Record) error {
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
	d, err := query.Detail(h.o.Sessions, r.PathValue("id"), h.o.Verify)
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
	var o store.ExportOptions
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
	ls, ok := h.o.Sessions.(store.LeafSource)
	if !ok {
		err := errors.New("export: the session log does not hand out its leaf bytes")
		h.log.Error("export", "err", err)
		json.NewEncoder(w).Encode(admin.APIError{Error: err.Error()})
		return
	}
	if _, err := store.Export(r.Context(), fw, ls, o); err != nil {
		// The status is sent; end the stream with an error line a reader
		// cannot mistake for a record.
		h.log.Error("export", "err", err)
		json.NewEncoder(w).Encode(admin.APIError{Error: err.Error()})
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

func (h *handler) apiApprovals(w http.ResponseWriter, r *http.Request) {
	if !h.needApprovals(w) {
		return
	}
	writeJSON(w, http.StatusOK, admin.ApprovalList{Approvals: h.o.Approvals.Pending()})
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

func (h *handler) apiDecide(decision string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.needApprovals(w) {
			return
		}
		var body admin.DecisionRequest
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
	if err := send("pending", admin.ApprovalList{Approvals: h.o.Approvals.Pending()}); err != nil {
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
