package central

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sessctl/sessctl/store"
)

// Fleet reads the logs shipped to PostgreSQL as one session source: the
// same filters as a replica's own log (store.Filter), answered from the
// indexes of sessctl_leaves, newest first across every origin. Each record
// it returns names its log in Record.Origin. It implements web's
// SessionSource, so the CLI, the admin API and the UI query a fleet as
// they query one log.
//
// A record is named by its session id, or by "SEQ@ORIGIN" (a bare
// sequence number only when a single origin has it).
type Fleet struct {
	pool *pgxpool.Pool
	// origin, if set, limits the source to one log.
	origin string
	// timeout bounds each query (the source interface has no context).
	timeout time.Duration
}

// fleetQueryTimeout bounds one query of a Fleet.
const fleetQueryTimeout = 30 * time.Second

// Batch sizes of List: the first page is small, so that a listing that
// wants a page of records reads little; later pages grow.
const (
	firstBatch = 128
	maxBatch   = 4096
)

// NewFleet returns the fleet-wide source on pool.
func NewFleet(pool *pgxpool.Pool) *Fleet {
	return &Fleet{pool: pool, timeout: fleetQueryTimeout}
}

// Only returns the source limited to the log of origin.
func (f *Fleet) Only(origin string) *Fleet {
	g := *f
	g.origin = origin
	return &g
}

// Origins returns the origins of the shipped logs, in the order they were
// first shipped.
func (f *Fleet) Origins(ctx context.Context) ([]string, error) {
	rows, err := f.pool.Query(ctx, "SELECT origin FROM sessctl_origins ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("central: origins: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("central: origins: %w", err)
	}
	return out, nil
}

// whereFilter builds the WHERE conditions for flt, appending the
// arguments to args.
func (f *Fleet) whereFilter(flt store.Filter, args *[]any) []string {
	var conds []string
	arg := func(v any) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args))
	}
	if f.origin != "" {
		conds = append(conds, "l.origin_id = (SELECT id FROM sessctl_origins WHERE origin = "+arg(f.origin)+")")
	}
	if !flt.Since.IsZero() {
		conds = append(conds, "l.start_time >= "+arg(flt.Since))
	}
	if !flt.Until.IsZero() {
		conds = append(conds, "l.start_time < "+arg(flt.Until))
	}
	for _, c := range []struct{ col, v string }{
		{"runner", flt.Runner}, {"repository", flt.Repo}, {"run", flt.Run}, {"actor", flt.Actor},
		{"outcome", string(flt.Outcome)}, {"host", flt.Host}, {"kind", string(flt.Kind)}, {"session_id", flt.Session},
	} {
		if c.v != "" {
			conds = append(conds, "l."+c.col+" = "+arg(c.v))
		}
	}
	if flt.SHA != "" {
		// As store.Filter: the full hash, or an abbreviation of at least
		// 7 characters (a prefix, answered by the text_pattern_ops index).
		if len(flt.SHA) >= 7 && len(flt.SHA) < 64 {
			conds = append(conds, "l.sha LIKE "+arg(likePrefix(flt.SHA)))
		} else {
			conds = append(conds, "l.sha = "+arg(flt.SHA))
		}
	}
	if flt.Rule != "" {
		conds = append(conds, "l.rules @> ARRAY["+arg(flt.Rule)+"]::text[]")
	}
	return conds
}

// likePrefix is a LIKE pattern matching the strings that start with s.
func likePrefix(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s) + "%"
}

// List calls fn for each record matching flt, newest first (by start
// time; ties by origin and sequence number, descending), in pages read
// with keyset pagination, until fn returns an error, which List returns.
// A row whose leaf does not match the filter (its query columns altered)
// is left out: the leaf bytes are what counts.
func (f *Fleet) List(flt store.Filter, fn func(*store.Record) error) error {
	batch := firstBatch
	var after *struct {
		t      time.Time
		origin int32
		seq    int64
	}
	n := 0
	for {
		var args []any
		conds := f.whereFilter(flt, &args)
		if after != nil {
			args = append(args, after.t, after.origin, after.seq)
			k := len(args)
			conds = append(conds, fmt.Sprintf("(l.start_time, l.origin_id, l.seq) < ($%d, $%d, $%d)", k-2, k-1, k))
		}
		if flt.Limit > 0 {
			batch = min(batch, flt.Limit-n+1)
		}
		sql := `SELECT o.origin, l.origin_id, l.seq, l.start_time, l.leaf FROM sessctl_leaves l JOIN sessctl_origins o ON o.id = l.origin_id`
		if len(conds) > 0 {
			sql += " WHERE " + strings.Join(conds, " AND ")
		}
		sql += fmt.Sprintf(" ORDER BY l.start_time DESC, l.origin_id DESC, l.seq DESC LIMIT %d", batch)
		type row struct {
			origin   string
			originID int32
			seq      int64
			start    time.Time
			leaf     []byte
		}
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		rows, err := f.pool.Query(ctx, sql, args...)
		if err != nil {
			cancel()
			return fmt.Errorf("central: list: %w", err)
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.origin, &x.originID, &x.seq, &x.start, &x.leaf)
			return x, err
		})
		cancel()
		if err != nil {
			return fmt.Errorf("central: list: %w", err)
		}
		for _, x := range got {
			rec, err := store.DecodeLeaf(x.leaf)
			if err != nil {
				return fmt.Errorf("central: list: origin %s record %d: %w", x.origin, x.seq, err)
			}
			if !flt.Match(rec) || rec.Seq != uint64(x.seq) {
				continue
			}
			rec.Origin = x.origin
			if err := fn(rec); err != nil {
				return err
			}
			n++
			if flt.Limit > 0 && n >= flt.Limit {
				return nil
			}
		}
		if len(got) < batch {
			return nil
		}
		last := got[len(got)-1]
		after = &struct {
			t      time.Time
			origin int32
			seq    int64
		}{last.start, last.originID, last.seq}
		batch = min(batch*4, maxBatch)
	}
}

// ErrAmbiguous is returned by Get for a bare sequence number that several
// origins have.
var ErrAmbiguous = errors.New("central: several logs have this record number; name it as SEQ@ORIGIN")

// Get returns the record named by id (a session id, "SEQ@ORIGIN", or a
// bare sequence number that one origin alone has) with its stored request
// and response bodies (nil if not recorded, or pruned before shipping).
// A session id shared by several records names the newest.
func (f *Fleet) Get(id string) (*store.Record, []byte, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	var args []any
	var conds []string
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	seqText, origin, hasOrigin := strings.Cut(id, "@")
	if !hasOrigin {
		origin = f.origin
	}
	if seq, err := strconv.ParseUint(seqText, 10, 63); err == nil {
		conds = append(conds, "l.seq = "+arg(int64(seq)))
		if origin != "" {
			conds = append(conds, "o.origin = "+arg(origin))
		}
	} else if !hasOrigin && id != "" {
		conds = append(conds, "l.session_id = "+arg(id))
		if f.origin != "" {
			conds = append(conds, "o.origin = "+arg(f.origin))
		}
	} else {
		return nil, nil, nil, fmt.Errorf("%w: %q", store.ErrNotFound, id)
	}
	sql := `SELECT o.origin, l.origin_id, l.seq, l.leaf FROM sessctl_leaves l JOIN sessctl_origins o ON o.id = l.origin_id WHERE ` +
		strings.Join(conds, " AND ") + ` ORDER BY l.start_time DESC, l.seq DESC LIMIT 2`
	rows, err := f.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("central: get %q: %w", id, err)
	}
	type row struct {
		origin   string
		originID int32
		seq      int64
		leaf     []byte
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.origin, &x.originID, &x.seq, &x.leaf)
		return x, err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("central: get %q: %w", id, err)
	}
	if len(got) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: %q", store.ErrNotFound, id)
	}
	if len(got) > 1 && got[0].origin != got[1].origin && !strings.Contains(id, "@") && isDigits(id) {
		return nil, nil, nil, fmt.Errorf("%w: %q is in %s and %s", ErrAmbiguous, id, got[0].origin, got[1].origin)
	}
	x := got[0]
	rec, err := store.DecodeLeaf(x.leaf)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("central: get: origin %s record %d: %w", x.origin, x.seq, err)
	}
	rec.Origin = x.origin
	var req, resp []byte
	brows, err := f.pool.Query(ctx, `SELECT part, body FROM sessctl_bodies WHERE origin_id = $1 AND seq = $2`, x.originID, x.seq)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("central: get %q: bodies: %w", id, err)
	}
	var part string
	var body []byte
	_, err = pgx.ForEachRow(brows, []any{&part, &body}, func() error {
		b := append([]byte{}, body...)
		if part == "request" {
			req = b
		} else {
			resp = b
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("central: get %q: bodies: %w", id, err)
	}
	rec.RequestBody, rec.ResponseBody = req, resp
	return rec, req, resp, nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Leaves calls fn with each shipped leaf of the source's one origin (see
// Only) from sequence number from on, in order, with its stored bodies
// (without their salts), as *store.Reader does, for an export. Like the
// store, it checks the chain as it goes: the sequence numbers are
// contiguous, each leaf names its own, and each names the hash of the one
// before as prev; at a break it returns an error before calling fn for
// the leaf that does not chain. It fails if the source is not limited to
// one origin.
func (f *Fleet) Leaves(from uint64, fn func(seq uint64, leaf, req, resp []byte) error) error {
	if f.origin == "" {
		return errors.New("central: leaves: name one origin (--origin)")
	}
	next := from
	prev := strings.Repeat("0", 2*tlog.HashSize)
	if from > 0 {
		var leaf []byte
		err := f.pool.QueryRow(context.Background(), `SELECT l.leaf FROM sessctl_leaves l JOIN sessctl_origins o ON o.id = l.origin_id
WHERE o.origin = $1 AND l.seq = $2`, f.origin, int64(from-1)).Scan(&leaf)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			prev = "" // unknown: the first leaf is not checked against it
		case err != nil:
			return fmt.Errorf("central: leaves of %s: %w", f.origin, err)
		default:
			h := tlog.RecordHash(leaf)
			prev = hex.EncodeToString(h[:])
		}
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		rows, err := f.pool.Query(ctx, `SELECT l.seq, l.leaf,
	(SELECT body FROM sessctl_bodies b WHERE b.origin_id = l.origin_id AND b.seq = l.seq AND b.part = 'request'),
	(SELECT body FROM sessctl_bodies b WHERE b.origin_id = l.origin_id AND b.seq = l.seq AND b.part = 'response')
FROM sessctl_leaves l JOIN sessctl_origins o ON o.id = l.origin_id
WHERE o.origin = $1 AND l.seq >= $2 ORDER BY l.seq LIMIT $3`, f.origin, int64(next), maxBatch)
		if err != nil {
			cancel()
			return fmt.Errorf("central: leaves of %s: %w", f.origin, err)
		}
		var seq int64
		var leaf, req, resp []byte
		n := 0
		_, err = pgx.ForEachRow(rows, []any{&seq, &leaf, &req, &resp}, func() error {
			if uint64(seq) != next {
				return fmt.Errorf("record %d is missing (the next shipped is %d)", next, seq)
			}
			rec, err := store.DecodeLeaf(leaf)
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			if rec.Seq != uint64(seq) {
				return fmt.Errorf("record %d: the leaf names itself record %d", seq, rec.Seq)
			}
			if prev != "" && rec.Prev != prev {
				return fmt.Errorf("record %d: prev %s is not the hash of record %d", seq, rec.Prev, seq-1)
			}
			h := tlog.RecordHash(leaf)
			prev = hex.EncodeToString(h[:])
			n++
			next++
			return fn(uint64(seq), leaf, req, resp)
		})
		cancel()
		if err != nil {
			return fmt.Errorf("central: leaves of %s: %w", f.origin, err)
		}
		if n < maxBatch {
			return nil
		}
	}
}

// OpenFleet connects to the fleet's database at dsn for reading, as
// `sessctl sessions --central` does: it checks that the schema exists and
// is not newer than this sessctl, and never migrates it. Close the pool
// with Close.
func OpenFleet(ctx context.Context, dsn string) (*Fleet, error) {
	db, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	pool := db.Pool
	v, err := SchemaVersion(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w (is this a sessctl fleet database?)", err)
	}
	ms, err := Migrations()
	if err != nil {
		pool.Close()
		return nil, err
	}
	if known := ms[len(ms)-1].Version; v > known {
		pool.Close()
		return nil, fmt.Errorf("%w: the database is at version %04d, this sessctl knows up to %04d", ErrSchemaTooNew, v, known)
	}
	return NewFleet(pool), nil
}

// Pool returns the source's connection pool.
func (f *Fleet) Pool() *pgxpool.Pool { return f.pool }

// Close closes the source's connection pool.
func (f *Fleet) Close() { f.pool.Close() }
