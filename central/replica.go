package central

import (
	"context"
	"io"
	"log/slog"
	"sync"
)

// Replica is a replica's link to its fleet's database: the database and
// the shipper of the replica's log, running in the background.
type Replica struct {
	// DB is the fleet's database (for other fleet features).
	DB *DB
	// Shipper ships the replica's log.
	Shipper *Shipper

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartReplica opens the database at dsn (without waiting for it to be
// reachable) and starts shipping src into it. Close stops it.
func StartReplica(ctx context.Context, dsn string, src Source, log *slog.Logger) (*Replica, error) {
	db, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Replica{DB: db, Shipper: NewShipper(db, src, ShipperOptions{Logger: log}), cancel: cancel}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.Shipper.Run(ctx)
	}()
	log.Info("shipping the log to PostgreSQL", "origin", src.Origin())
	return r, nil
}

// HealthDetail is the "central" member of /healthz: the shipping status
// (see [Status]); a replica behind on shipping is still healthy.
func (r *Replica) HealthDetail() map[string]any {
	return map[string]any{"central": r.Shipper.Status()}
}

// WritePrometheus writes the shipping metrics (see [Shipper.WritePrometheus]).
func (r *Replica) WritePrometheus(w io.Writer) error { return r.Shipper.WritePrometheus(w) }

// Close stops shipping and closes the database. What is not shipped yet
// is shipped by the next start.
func (r *Replica) Close() {
	r.cancel()
	r.wg.Wait()
	r.DB.Close()
}
