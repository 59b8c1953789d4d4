package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/store"
)

// promptPreview bounds the masked prompt shown to approvers.
const promptPreview = 4 << 10

// approve holds a request for a human decision (or, in ticket mode,
// checks for one). It reports whether the request may go on; otherwise it
// has answered the runner and recorded why.
func (ex *exchange) approve(w http.ResponseWriter, r *http.Request, why string, body []byte) bool {
	q := ex.s.opt.Approvals
	if q == nil {
		ex.refuse(w, http.StatusForbidden, errPolicyViolation, "approval_required", store.OutcomeBlocked,
			"this request needs human approval ("+why+"), and no approval queue is configured")
		return false
	}
	req := approval.Request{
		ID:            uuid.Must(uuid.NewV7()).String(),
		SessionID:     ex.rec.SessionID,
		Requester:     identityKey(ex.rec.Identity),
		RequesterName: identityName(ex.rec.Identity),
		Host:          ex.t.host, Method: r.Method, Path: r.URL.Path, Model: ex.rec.Model,
		Rule:    why,
		Prompt:  string(body[:min(len(body), promptPreview)]),
		Created: time.Now().UTC(),
	}
	var d approval.Decision
	if ex.s.opt.ApprovalMode == "ticket" {
		sum := sha256.Sum256(body)
		dec, decided := q.Ticket(req, hex.EncodeToString(sum[:]))
		if !decided {
			ex.recordApproval(r.Context(), approval.Decision{ID: dec.ID, Decision: "pending"})
			ex.refuse(w, http.StatusForbidden, errApprovalPending, "approval_required", store.OutcomePending,
				"this request needs human approval ("+why+"); approval id "+dec.ID+"; send it again once approved")
			return false
		}
		d = dec
	} else {
		ex.recordApproval(r.Context(), approval.Decision{ID: req.ID, Decision: "pending"})
		var err error
		d, err = q.Hold(r.Context(), req)
		if err != nil && !errors.Is(err, approval.ErrTimeout) {
			ex.recordApproval(r.Context(), approval.Decision{ID: req.ID, Decision: "abandoned", At: time.Now().UTC(), Reason: "client went away"})
			ex.rec.Kind = store.KindRefused
			ex.finish(r.Context(), 0, store.OutcomeClientGone, "client went away while held for approval")
			return false
		}
		ex.recordApproval(r.Context(), d)
	}
	ex.rec.Approval = &store.Approval{ID: d.ID, Decision: d.Decision, By: d.By, At: d.At, Reason: d.Reason}
	switch d.Decision {
	case "approved":
		return true
	case "timeout":
		ex.refuse(w, http.StatusForbidden, errApprovalTimeout, "approval_timeout", store.OutcomeApprovalTimeout,
			"no approver decided on this request in time ("+why+")")
	default:
		msg := "an approver denied this request"
		if d.Reason != "" {
			msg += ": " + d.Reason
		}
		ex.refuse(w, http.StatusForbidden, errApprovalDenied, "approval_denied", store.OutcomeApprovalDenied, msg)
	}
	return false
}

// recordApproval appends an approval record linked to the exchange's session.
func (ex *exchange) recordApproval(ctx context.Context, d approval.Decision) {
	now := time.Now().UTC()
	rec := &store.Record{
		Kind: store.KindApproval, SessionID: ex.rec.SessionID, Start: now, End: now,
		Identity: ex.rec.Identity, Conn: ex.rec.Conn, Host: ex.rec.Host, Method: ex.rec.Method,
		Path: ex.rec.Path, Model: ex.rec.Model, Outcome: d.Decision,
		Approval: &store.Approval{ID: d.ID, Decision: d.Decision, By: d.By, At: d.At, Reason: d.Reason},
	}
	if _, err := ex.s.opt.Store.Append(context.WithoutCancel(ctx), rec); err != nil {
		ex.s.log.Error("cannot record approval", "approval", d.ID, "err", err)
	}
}

// identityKey names an identity for self-approval checks.
func identityKey(id store.Identity) string {
	if id.Runner != "" {
		return "runner:" + id.Runner
	}
	return id.Issuer + "#" + id.Subject
}

// identityName is the human label of an identity.
func identityName(id store.Identity) string {
	if id.Runner != "" {
		return id.Runner
	}
	if repo := id.Claims["repository"]; repo != "" {
		return repo
	}
	if p := id.Claims["project_path"]; p != "" {
		return p
	}
	return id.Subject
}
