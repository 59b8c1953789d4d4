package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

// admin returns what the replica's admin listener serves: without
// central_dsn, its queue and log; in a fleet, the shared approval inbox
// (running until ctx is done) and the fleet's sessions, falling back to
// this replica's own log while PostgreSQL cannot be read.
func (f *fleet) admin(ctx context.Context, queue *approval.Queue, st *store.Store, log *slog.Logger) (approval.Inbox, query.Source, error) {
	if f.r == nil {
		return queue, st, nil
	}
	db := f.r.DB
	inbox, err := central.NewInbox(db.Pool, central.InboxOptions{Queue: queue, Origin: st.Origin(), Ready: db.Ready, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	go inbox.Run(ctx)
	return inbox, &fleetSessions{fleet: central.NewFleet(db.Pool), local: st, log: log}, nil
}

// fleetSessions reads the fleet's shipped logs, and this replica's own
// log when PostgreSQL fails, so that its admin API and UI keep working.
// A bare sequence number names a record of this replica's own log, as
// without a fleet.
type fleetSessions struct {
	fleet *central.Fleet
	local *store.Store
	log   *slog.Logger
}

func (s *fleetSessions) Get(id string) (*store.Record, []byte, []byte, error) {
	if isDecimal(id) {
		return s.local.Get(id)
	}
	rec, req, resp, err := s.fleet.Get(id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("reading the fleet's sessions failed; reading this replica's log", "err", err)
		return s.local.Get(id)
	}
	return rec, req, resp, err
}

func (s *fleetSessions) List(f store.Filter, fn func(*store.Record) error) error {
	n := 0
	var fnErr error
	err := s.fleet.List(f, func(r *store.Record) error {
		n++
		fnErr = fn(r)
		return fnErr
	})
	if err != nil && fnErr == nil && n == 0 {
		s.log.Warn("listing the fleet's sessions failed; listing this replica's log", "err", err)
		return s.local.List(f, fn)
	}
	return err
}

func isDecimal(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
