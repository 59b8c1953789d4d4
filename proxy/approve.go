package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/store"
)

// promptPreview bounds the masked prompt shown to approvers.
const promptPreview = 4 << 10

// verdict is the outcome of an approval: go on, or refuse with this
// refusal (whose message is the reason when the client went away).
type verdict struct {
	ok         bool
	clientGone bool
	refusal
}

// approve holds an HTTP request for a human decision (or, in ticket
// mode, checks for one). It reports whether the request may go on;
// otherwise it has answered the runner and recorded why.
func (ex *exchange) approve(w http.ResponseWriter, r *http.Request, why string, body []byte) bool {
	t0 := time.Now()
	v := ex.awaitApproval(r.Context(), why, body)
	ex.tm.wait(t0)
	switch {
	case v.ok:
		return true
	case v.clientGone:
		ex.rec.Kind = store.KindRefused
		ex.finish(r.Context(), 0, store.OutcomeClientGone, v.msg)
	default:
		ex.refuse(w, v.refusal)
	}
	return false
}

// awaitApproval asks the approval queue about this exchange, recording
// each step (pending, then the decision) as an approval record linked to
// the exchange's session.
func (ex *exchange) awaitApproval(ctx context.Context, why string, body []byte) verdict {
	q := ex.s.opt.Approvals
	if q == nil {
		return verdict{refusal: refApprovalNoQueue.with(why)}
	}
	req := approval.Request{
		ID:            uuid.Must(uuid.NewV7()).String(),
		SessionID:     ex.rec.SessionID,
		Requester:     ex.who.String(),
		RequesterName: ex.who.Caller(),
		Host:          ex.t.host, Method: ex.rec.Method, Path: ex.rec.Path, Model: ex.rec.Model,
		Rule:    why,
		Prompt:  string(body[:min(len(body), promptPreview)]),
		Created: time.Now().UTC(),
	}
	var d approval.Decision
	if ex.s.opt.ApprovalMode == "ticket" {
		sum := sha256.Sum256(body)
		dec, decided := q.Ticket(req, hex.EncodeToString(sum[:]))
		if dec.ID == "" {
			return verdict{refusal: refApprovalUnavailable.with(why)}
		}
		if !decided {
			ex.recordApproval(ctx, approval.Decision{ID: dec.ID, Decision: approval.Pending})
			return verdict{refusal: refApprovalPending.with(why, dec.ID)}
		}
		d = dec
	} else {
		ex.recordApproval(ctx, approval.Decision{ID: req.ID, Decision: approval.Pending})
		var err error
		d, err = q.Hold(ctx, req)
		switch {
		case err != nil && ctx.Err() != nil:
			ex.recordApproval(ctx, d)
			return verdict{clientGone: true, refusal: refusal{msg: "client went away while held for approval"}}
		case err != nil:
			return verdict{refusal: refApprovalUnavailable.with(why)}
		}
		ex.recordApproval(ctx, d)
	}
	ex.rec.Approval = &store.Approval{ID: d.ID, Decision: d.Decision, By: d.By, At: d.At, Reason: d.Reason}
	switch d.Decision {
	case approval.Approved:
		return verdict{ok: true}
	case approval.Timeout:
		return verdict{refusal: refApprovalTimeout.with(why)}
	}
	return verdict{refusal: refApprovalDenied.detail(d.Reason)}
}

// recordApproval appends an approval record linked to the exchange's session.
func (ex *exchange) recordApproval(ctx context.Context, d approval.Decision) {
	now := time.Now().UTC()
	rec := &store.Record{
		Kind: store.KindApproval, SessionID: ex.rec.SessionID, Start: now, End: now,
		Identity: ex.rec.Identity, Conn: ex.rec.Conn, Host: ex.rec.Host, Method: ex.rec.Method,
		Path: ex.rec.Path, Model: ex.rec.Model, Outcome: store.Outcome(d.Decision),
		Approval: &store.Approval{ID: d.ID, Decision: d.Decision, By: d.By, At: d.At, Reason: d.Reason},
	}
	if _, err := ex.s.opt.Store.Append(context.WithoutCancel(ctx), rec); err != nil {
		ex.s.log.Error("cannot record approval", "approval", d.ID, "err", err)
	}
}
