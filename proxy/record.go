package proxy

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/store"
)

// recordRefusal appends a record of traffic refused before any exchange
// (egress policy, plain HTTP), or counts it in a summary when its source
// is over its rate (see RefusalLimits). kind names the refusal (its
// code) for the summaries. Failing to record it is logged: the traffic
// was refused either way.
func (s *Server) recordRefusal(ctx context.Context, kind string, r *store.Record) {
	now := time.Now().UTC()
	r.Kind = store.KindRefused
	r.Outcome = store.OutcomeRefused
	boundRefusal(r)
	s.opt.Metrics.refusals.WithLabelValues(providerOf(r.Host), refusalEgress).Inc()
	if !s.refusals.admit(r.Conn.Client, r.Host, kind, r) {
		s.opt.Metrics.refusalsMerged.Inc()
		return
	}
	if r.SessionID == "" {
		r.SessionID = uuid.Must(uuid.NewV7()).String()
	}
	if r.Start.IsZero() {
		r.Start = now
	}
	r.End = now
	if _, err := s.opt.Store.Append(context.WithoutCancel(ctx), r); err != nil {
		s.recordErrs.log(s.log, "cannot record refusal", err, "host", r.Host)
		s.opt.Metrics.recordErrors.Inc()
	}
}
