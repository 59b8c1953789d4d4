package central

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sessctl/sessctl/store"
)

// Source is the log a Shipper copies; *store.Store is one.
type Source interface {
	Origin() string
	PublicKey() string
	// Size is the number of durable records.
	Size() (uint64, error)
	// StoredRecords hands out the stored records from a sequence number on.
	StoredRecords(from uint64, fn func(store.StoredRecord) error) error
	// Checkpoints hands out the signed checkpoints above a tree size.
	Checkpoints(after uint64, fn func(size uint64, signed []byte) error) error
}

// Defaults of ShipperOptions.
const (
	DefaultBatch      = 2000
	DefaultBatchBytes = 8 << 20
	DefaultPoll       = 200 * time.Millisecond
	DefaultMinBackoff = 200 * time.Millisecond
	DefaultMaxBackoff = 15 * time.Second
)

// ShipperOptions tune a Shipper; zero fields take the defaults.
type ShipperOptions struct {
	// Batch and BatchBytes bound the records (and their leaf and body
	// bytes) shipped in one transaction.
	Batch      int
	BatchBytes int
	// Poll is how often the shipper looks for new records when it has
	// caught up.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts while
	// PostgreSQL is unreachable or refuses (doubling, with jitter).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Shipper copies one replica's log into the fleet's database: every leaf
// exactly as stored, every body (salt and bytes), every signed checkpoint,
// in order, in batches of one transaction each. It resumes from what the
// database holds for its origin, so a restart or an outage loses and
// duplicates nothing. It runs beside the proxy, never on its request
// path: while PostgreSQL is down it retries with backoff and the log
// keeps growing locally.
type Shipper struct {
	db   *DB
	src  Source
	opts ShipperOptions
	log  *slog.Logger

	shipped atomic.Uint64 // records known to be in the database (0..n-1)
	known   atomic.Bool   // shipped was read from the database
	mu      sync.Mutex
	lastErr error
	// Owned by Run.
	originID int32
	cpAfter  uint64 // checkpoints up to this size are shipped
}

// NewShipper returns a shipper of src into db. Call Run to start it.
func NewShipper(db *DB, src Source, opts ShipperOptions) *Shipper {
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = min(DefaultMinBackoff, opts.MaxBackoff)
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Shipper{db: db, src: src, opts: opts, log: opts.Logger.With("component", "central", "origin", src.Origin())}
}

// Shipped returns the number of records the database is known to hold
// (records 0 to Shipped()-1, with their bodies): retention may prune the
// bodies below it. It is 0 until the shipper has reached the database.
func (s *Shipper) Shipped() uint64 { return s.shipped.Load() }

// Status is what a Shipper reports on /healthz and /metrics.
type Status struct {
	// Records is the size of the local log; Shipped the records known to
	// be in the database; Lag the difference (records not yet shipped).
	Records uint64 `json:"records"`
	Shipped uint64 `json:"shipped"`
	Lag     uint64 `json:"lag_records"`
	// Known is false until the shipper has read its position from the
	// database (Shipped is then 0 and Lag the whole log).
	Known bool `json:"known"`
	// Error is the last failure, empty once a batch went through.
	Error string `json:"error,omitempty"`
}

// Status returns the shipper's state.
func (s *Shipper) Status() Status {
	st := Status{Shipped: s.shipped.Load(), Known: s.known.Load()}
	n, err := s.src.Size()
	if err != nil {
		st.Error = err.Error()
	}
	st.Records = n
	if n > st.Shipped {
		st.Lag = n - st.Shipped
	}
	s.mu.Lock()
	if s.lastErr != nil && st.Error == "" {
		st.Error = s.lastErr.Error()
	}
	s.mu.Unlock()
	return st
}

// WritePrometheus writes sessctl_central_lag_records (records of the local
// log not yet shipped) and sessctl_central_shipped_records.
func (s *Shipper) WritePrometheus(w io.Writer) error {
	st := s.Status()
	_, err := fmt.Fprintf(w, "# HELP sessctl_central_lag_records Records of the local log not yet shipped to PostgreSQL.\n"+
		"# TYPE sessctl_central_lag_records gauge\nsessctl_central_lag_records %d\n"+
		"# HELP sessctl_central_shipped_records Records of the local log known to be in PostgreSQL.\n"+
		"# TYPE sessctl_central_shipped_records gauge\nsessctl_central_shipped_records %d\n", st.Lag, st.Shipped)
	return err
}

func (s *Shipper) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && s.lastErr == nil:
		s.log.Warn("shipping to PostgreSQL failed; the log keeps recording locally and shipping retries", "err", err)
	case err == nil && s.lastErr != nil:
		s.log.Info("shipping to PostgreSQL again")
	case err != nil && err.Error() != s.lastErr.Error():
		s.log.Warn("shipping to PostgreSQL still failing", "err", err)
	}
	s.lastErr = err
}

// ErrDiverged is returned (and shipping stops until the next attempt)
// when the database holds, for this origin, a record or checkpoint whose
// bytes differ from the local log's, or another public key: something else
// wrote under this origin, or the rows were altered. Nothing is
// overwritten; run sessctl verify --central.
var ErrDiverged = errors.New("central: the database differs from the local log")

// Run ships until ctx is done. Failures are logged and retried with
// backoff; Run returns only ctx's error.
func (s *Shipper) Run(ctx context.Context) error {
	backoff := s.opts.MinBackoff
	for {
		before := s.shipped.Load()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.shipped.Load() != before {
			// The session shipped before it failed: start over gently.
			backoff = s.opts.MinBackoff
		}
		s.setErr(err)
		if errors.Is(err, ErrDiverged) {
			s.log.Error("refusing to ship: run sessctl verify --central", "err", err)
			backoff = s.opts.MaxBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, s.opts.MaxBackoff)
	}
}

// session connects, finds where the database is, and ships until an error.
func (s *Shipper) session(ctx context.Context) error {
	if err := s.db.Ready(ctx); err != nil {
		return err
	}
	if err := s.resume(ctx); err != nil {
		return err
	}
	for {
		n, err := s.shipBatch(ctx)
		if err != nil {
			return err
		}
		s.setErr(nil)
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.opts.Poll):
		}
	}
}

// resume registers the origin and reads how far the database is.
func (s *Shipper) resume(ctx context.Context) error {
	origin, key := s.src.Origin(), s.src.PublicKey()
	var id int32
	var dbKey string
	err := s.db.Pool.QueryRow(ctx, `SELECT id, public_key FROM sessctl_origins WHERE origin = $1`, origin).Scan(&id, &dbKey)
	if errors.Is(err, pgx.ErrNoRows) {
		// Not shipped yet: the first batch registers the origin in its
		// transaction, so that no origin is left without records.
		s.originID, s.cpAfter = 0, 0
		s.shipped.Store(0)
		s.known.Store(true)
		return nil
	}
	if err != nil {
		return fmt.Errorf("central: resume: %w", err)
	}
	if dbKey != key {
		// Flag it where verify and operators see it; never replace it.
		if _, err := s.db.Pool.Exec(ctx, `UPDATE sessctl_origins SET key_changed = true, offered_key = $2, key_changed_at = now() WHERE id = $1 AND NOT key_changed`, id, key); err != nil {
			return fmt.Errorf("central: flag key change: %w", err)
		}
		return fmt.Errorf("%w: origin %s is registered with key %s, this log is signed by %s", ErrDiverged, origin, dbKey, key)
	}
	var last *int64
	var lastHash []byte
	err = s.db.Pool.QueryRow(ctx, `SELECT seq, leaf_hash FROM sessctl_leaves WHERE origin_id = $1 ORDER BY seq DESC LIMIT 1`, id).Scan(&last, &lastHash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("central: resume: %w", err)
	}
	next := uint64(0)
	if last != nil {
		next = uint64(*last) + 1
		// The newest shipped record must be the local one: else this
		// origin's rows came from elsewhere.
		var local []byte
		if err := s.src.StoredRecords(uint64(*last), func(r store.StoredRecord) error {
			h := tlog.RecordHash(r.Leaf)
			local = h[:]
			return errStopWalk
		}); err != nil && !errors.Is(err, errStopWalk) {
			return fmt.Errorf("central: resume: local log: %w", err)
		}
		if local == nil {
			return fmt.Errorf("%w: the database holds records of origin %s up to %d, the local log has fewer", ErrDiverged, origin, *last)
		}
		if !bytes.Equal(local, lastHash) {
			return fmt.Errorf("%w: record %d of origin %s", ErrDiverged, *last, origin)
		}
	}
	var cp int64
	if err := s.db.Pool.QueryRow(ctx, `SELECT coalesce(max(size), 0) FROM sessctl_checkpoints WHERE origin_id = $1`, id).Scan(&cp); err != nil {
		return fmt.Errorf("central: resume: %w", err)
	}
	s.originID, s.cpAfter = id, uint64(cp)
	s.shipped.Store(next)
	s.known.Store(true)
	s.log.Debug("shipping resumes", "from", next, "checkpoints_after", cp)
	return nil
}

var errStopWalk = errors.New("stop")

type checkpoint struct {
	size uint64
	note []byte
}

// shipBatch ships the next records (up to a batch) and the checkpoints
// they complete, in one transaction, and returns how many records it
// shipped.
func (s *Shipper) shipBatch(ctx context.Context) (int, error) {
	next := s.shipped.Load()
	var recs []store.StoredRecord
	bytesIn := 0
	err := s.src.StoredRecords(next, func(r store.StoredRecord) error {
		recs = append(recs, r)
		bytesIn += len(r.Leaf)
		for _, b := range []*store.SealedBody{r.Request, r.Response} {
			if b != nil {
				bytesIn += len(b.Body)
			}
		}
		if len(recs) >= s.opts.Batch || bytesIn >= s.opts.BatchBytes {
			return errStopWalk
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return 0, fmt.Errorf("central: read local log: %w", err)
	}
	upTo := next + uint64(len(recs))
	var cps []checkpoint
	if err := s.src.Checkpoints(s.cpAfter, func(size uint64, note []byte) error {
		if size > upTo {
			return errStopWalk
		}
		cps = append(cps, checkpoint{size, note})
		return nil
	}); err != nil && !errors.Is(err, errStopWalk) {
		return 0, fmt.Errorf("central: read local checkpoints: %w", err)
	}
	if len(recs) == 0 && len(cps) == 0 {
		return 0, nil
	}
	id := s.originID
	batch := func(careful bool) func(tx pgx.Tx) error {
		return func(tx pgx.Tx) error {
			var err error
			if id == 0 {
				if id, err = s.register(ctx, tx); err != nil {
					return err
				}
			}
			rows, bodies, err := s.rows(recs, id)
			if err != nil {
				return err
			}
			if careful {
				return s.insertCompare(ctx, tx, id, recs, rows, bodies)
			}
			return s.copyBatch(ctx, tx, id, rows, bodies)
		}
	}
	err = pgx.BeginFunc(ctx, s.db.Pool, batch(false))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		// Some rows are there already (another shipper of this origin, or
		// a retry after a lost commit): insert the others, compare these.
		id = s.originID
		err = pgx.BeginFunc(ctx, s.db.Pool, batch(true))
	}
	if err == nil {
		s.originID = id
	}
	if err == nil {
		err = pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error { return s.shipCheckpoints(ctx, tx, cps) })
	}
	if err != nil {
		return 0, err
	}
	s.shipped.Store(upTo)
	if len(cps) > 0 {
		s.cpAfter = cps[len(cps)-1].size
	}
	return len(recs), nil
}

var (
	leafColumns = []string{"origin_id", "seq", "leaf", "leaf_hash", "start_time", "end_time", "kind", "session_id",
		"repository", "workflow", "run", "sha", "actor", "runner", "outcome", "host", "model", "status", "rules"}
	bodyColumns = []string{"origin_id", "seq", "part", "salt", "body"}
)

// rows turns records into rows of sessctl_leaves and sessctl_bodies.
func (s *Shipper) rows(recs []store.StoredRecord, id int32) (leaves, bodies [][]any, err error) {
	leaves = make([][]any, 0, len(recs))
	for _, r := range recs {
		rec, err := store.DecodeLeaf(r.Leaf)
		if err != nil {
			return nil, nil, fmt.Errorf("central: record %d: %w", r.Seq, err)
		}
		h := tlog.RecordHash(r.Leaf)
		c := ColumnsOf(rec)
		leaves = append(leaves, []any{id, int64(r.Seq), r.Leaf, h[:], rec.Start, nullTime(rec.End), string(rec.Kind), c.SessionID,
			c.Repository, c.Workflow, c.Run, c.SHA, c.Actor, c.Runner, c.Outcome, c.Host, c.Model, c.Status, c.Rules})
		for _, b := range []struct {
			part string
			b    *store.SealedBody
		}{{"request", r.Request}, {"response", r.Response}} {
			if b.b != nil {
				bodies = append(bodies, []any{id, int64(r.Seq), b.part, b.b.Salt, b.b.Body})
			}
		}
	}
	return leaves, bodies, nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// register records the origin with its key in the transaction of its
// first batch, and returns its id. Another key already registered for
// the origin (a concurrent shipper) is ErrDiverged.
func (s *Shipper) register(ctx context.Context, tx pgx.Tx) (int32, error) {
	origin, key := s.src.Origin(), s.src.PublicKey()
	if _, err := tx.Exec(ctx, `INSERT INTO sessctl_origins (origin, public_key) VALUES ($1, $2) ON CONFLICT (origin) DO NOTHING`, origin, key); err != nil {
		return 0, fmt.Errorf("central: register origin: %w", err)
	}
	var id int32
	var dbKey string
	if err := tx.QueryRow(ctx, `SELECT id, public_key FROM sessctl_origins WHERE origin = $1`, origin).Scan(&id, &dbKey); err != nil {
		return 0, fmt.Errorf("central: register origin: %w", err)
	}
	if dbKey != key {
		return 0, fmt.Errorf("%w: origin %s is registered with key %s, this log is signed by %s", ErrDiverged, origin, dbKey, key)
	}
	return id, nil
}

// copyBatch is the fast path: COPY the rows (a duplicate key fails it).
func (s *Shipper) copyBatch(ctx context.Context, tx pgx.Tx, id int32, leaves, bodies [][]any) error {
	if len(leaves) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sessctl_leaves"}, leafColumns, pgx.CopyFromRows(leaves)); err != nil {
			return fmt.Errorf("central: ship records: %w", err)
		}
	}
	if len(bodies) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sessctl_bodies"}, bodyColumns, pgx.CopyFromRows(bodies)); err != nil {
			return fmt.Errorf("central: ship bodies: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE sessctl_origins SET last_shipped = now() WHERE id = $1`, id); err != nil {
		return fmt.Errorf("central: ship: %w", err)
	}
	return nil
}

// insertCompare inserts the rows one by one, skipping those already there,
// and checks that those hold the same bytes: a row is never overwritten,
// and a different one is ErrDiverged.
func (s *Shipper) insertCompare(ctx context.Context, tx pgx.Tx, id int32, recs []store.StoredRecord, leaves, bodies [][]any) error {
	b := &pgx.Batch{}
	for _, row := range leaves {
		b.Queue(`INSERT INTO sessctl_leaves (`+joinCols(leafColumns)+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) ON CONFLICT DO NOTHING`, row...)
	}
	for _, row := range bodies {
		b.Queue(`INSERT INTO sessctl_bodies (`+joinCols(bodyColumns)+`) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, row...)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("central: ship records: %w", err)
	}
	seqs := make([]int64, len(recs))
	for i, r := range recs {
		seqs[i] = int64(r.Seq)
	}
	rows, err := tx.Query(ctx, `SELECT seq, leaf FROM sessctl_leaves WHERE origin_id = $1 AND seq = ANY($2) ORDER BY seq`, id, seqs)
	if err != nil {
		return fmt.Errorf("central: compare records: %w", err)
	}
	have := map[int64][]byte{}
	for rows.Next() {
		var seq int64
		var leaf []byte
		if err := rows.Scan(&seq, &leaf); err != nil {
			rows.Close()
			return fmt.Errorf("central: compare records: %w", err)
		}
		have[seq] = leaf
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("central: compare records: %w", err)
	}
	for _, r := range recs {
		if !bytes.Equal(have[int64(r.Seq)], r.Leaf) {
			return fmt.Errorf("%w: record %d of origin %s", ErrDiverged, r.Seq, s.src.Origin())
		}
	}
	for _, row := range bodies {
		var salt, body []byte
		if err := tx.QueryRow(ctx, `SELECT salt, body FROM sessctl_bodies WHERE origin_id = $1 AND seq = $2 AND part = $3`, row[0], row[1], row[2]).Scan(&salt, &body); err != nil {
			return fmt.Errorf("central: compare bodies: %w", err)
		}
		if !bytes.Equal(salt, row[3].([]byte)) || !bytes.Equal(body, row[4].([]byte)) {
			return fmt.Errorf("%w: %s body of record %d of origin %s", ErrDiverged, row[2], row[1], s.src.Origin())
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE sessctl_origins SET last_shipped = now() WHERE id = $1`, id); err != nil {
		return fmt.Errorf("central: ship: %w", err)
	}
	return nil
}

// shipCheckpoints inserts signed checkpoints, or checks that the ones
// already there are byte for byte the same.
func (s *Shipper) shipCheckpoints(ctx context.Context, tx pgx.Tx, cps []checkpoint) error {
	for _, c := range cps {
		if _, err := tx.Exec(ctx, `INSERT INTO sessctl_checkpoints (origin_id, size, note) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			s.originID, int64(c.size), c.note); err != nil {
			return fmt.Errorf("central: ship checkpoint %d: %w", c.size, err)
		}
		var note []byte
		if err := tx.QueryRow(ctx, `SELECT note FROM sessctl_checkpoints WHERE origin_id = $1 AND size = $2`, s.originID, int64(c.size)).Scan(&note); err != nil {
			return fmt.Errorf("central: ship checkpoint %d: %w", c.size, err)
		}
		if !bytes.Equal(note, c.note) {
			return fmt.Errorf("%w: checkpoint of size %d of origin %s", ErrDiverged, c.size, s.src.Origin())
		}
	}
	return nil
}

func joinCols(cols []string) string { return strings.Join(cols, ", ") }

// ShipAll ships what src holds now and returns once the database has all
// of it, or at the first error, with the number of records the database
// holds: for a stopped replica's log (sessctl ship), e.g. its shutdown
// record and final checkpoint before the replica is retired.
func (s *Shipper) ShipAll(ctx context.Context) (uint64, error) {
	if err := s.db.Ready(ctx); err != nil {
		return 0, err
	}
	if err := s.resume(ctx); err != nil {
		return 0, err
	}
	for {
		n, err := s.shipBatch(ctx)
		if err != nil {
			return s.shipped.Load(), err
		}
		if n == 0 {
			return s.shipped.Load(), nil
		}
	}
}
