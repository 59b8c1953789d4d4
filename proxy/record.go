package proxy

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/store"
)

// recordRefusal appends a record of traffic refused before any exchange
// (egress policy, plain HTTP). Failing to record it is logged: the traffic
// was refused either way.
func (s *Server) recordRefusal(ctx context.Context, r *store.Record) {
	now := time.Now().UTC()
	r.Kind = store.KindRefused
	r.Outcome = store.OutcomeRefused
	r.Host = truncate(r.Host, 255)
	r.Path = truncate(r.Path, 1024)
	if r.SessionID == "" {
		r.SessionID = uuid.Must(uuid.NewV7()).String()
	}
	if r.Start.IsZero() {
		r.Start = now
	}
	r.End = now
	s.opt.Metrics.refusals.WithLabelValues(providerOf(r.Host), refusalEgress).Inc()
	if _, err := s.opt.Store.Append(context.WithoutCancel(ctx), r); err != nil {
		s.log.Error("cannot record refusal", "host", r.Host, "err", err)
		s.opt.Metrics.recordErrors.Inc()
	}
}
