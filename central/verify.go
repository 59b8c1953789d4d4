package central

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/sessctl/sessctl/store"
)

// VerifyOptions select what Verify checks and which keys it trusts.
type VerifyOptions struct {
	// Origins limits verification to these origins; empty: every origin
	// in the database, and every origin in Keys.
	Origins []string
	// Keys pins each origin's checkpoint key (a note verifier key), from
	// the config (central_origins) or the command line. The database
	// alone never decides which keys are trusted: an origin without a
	// pinned key is checked against the key recorded when it was first
	// seen, and the report says so.
	Keys map[string]string
}

// OriginReport is the result of verifying one origin.
type OriginReport struct {
	Origin string `json:"origin"`
	// Report is the log verifier's report on the origin's rows; nil if
	// the origin could not be checked.
	Report *store.Report `json:"report,omitempty"`
	// KeyPinned tells whether the key came from Keys; if not, it is the
	// key recorded when the origin was first seen (FirstSeen).
	KeyPinned bool      `json:"key_pinned"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// Problem is set when the origin is bad although its rows may verify:
	// a key change was flagged, the database's genesis names another key
	// than the pinned one, or a pinned origin has no rows at all.
	Problem string `json:"problem,omitempty"`
	// Error is set when the origin could not be checked.
	Error string `json:"error,omitempty"`
	// Unvouched counts the newest records that come after the newest
	// shipped checkpoint: only the hash chain vouches for them.
	Unvouched int64 `json:"unvouched"`
}

// Status is the exit status the report calls for: 0 ok, 1 tampering, 2
// could not check.
func (r *OriginReport) Status() int {
	switch {
	case r.Problem != "" || (r.Report != nil && !r.Report.OK()):
		return 1
	case r.Error != "" || r.Report == nil:
		return 2
	}
	return 0
}

// Line is the one line sessctl verify --central prints for the origin:
// "ok: origin <o>: N records, head <hex>", or the first problem with its
// sequence number.
func (r *OriginReport) Line() string {
	switch {
	case r.Problem != "":
		return fmt.Sprintf("origin %s: %s", r.Origin, r.Problem)
	case r.Report != nil && !r.Report.OK():
		p := r.Report.Problems[0]
		line := fmt.Sprintf("origin %s: %s", r.Origin, p)
		if p.Detail != "" {
			line += " (" + p.Detail + ")"
		}
		if n := len(r.Report.Problems); n > 1 {
			line += fmt.Sprintf(" and %d more problems", n-1)
		}
		return line
	case r.Error != "" || r.Report == nil:
		return fmt.Sprintf("origin %s: cannot verify: %s", r.Origin, r.Error)
	}
	return fmt.Sprintf("ok: origin %s: %d records, head %s", r.Origin, r.Report.Records, r.Report.Head)
}

// OriginOfKey returns the name of a note verifier key, which for a sessctl
// log is its origin.
func OriginOfKey(vkey string) (string, error) {
	if _, err := note.NewVerifier(vkey); err != nil {
		return "", fmt.Errorf("central: not a note verifier key: %w", err)
	}
	name, _, _ := strings.Cut(vkey, "+")
	return name, nil
}

type originRow struct {
	id         int32
	origin     string
	key        string
	firstSeen  time.Time
	keyChanged bool
	offered    *string
	changedAt  *time.Time
}

// Verify checks the shipped logs in the database, one origin at a time,
// each in one read-only snapshot: it recomputes the hash chain and the
// Merkle tree from the stored leaf bytes and the body commitments from the
// stored bodies with the log verifier ([store.VerifyStored]), and checks
// every shipped checkpoint's signature against the origin's key and its
// root against the recomputed tree. The reports come in origin order. An
// error means the database could not be read at all.
func Verify(ctx context.Context, db *DB, opts VerifyOptions) ([]*OriginReport, error) {
	if err := checkSchema(ctx, db); err != nil {
		return nil, err
	}
	rows, err := db.Pool.Query(ctx, `SELECT id, origin, public_key, first_seen, key_changed, offered_key, key_changed_at FROM sessctl_origins ORDER BY origin`)
	if err != nil {
		return nil, fmt.Errorf("central: verify: %w", err)
	}
	origins, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (originRow, error) {
		var o originRow
		err := r.Scan(&o.id, &o.origin, &o.key, &o.firstSeen, &o.keyChanged, &o.offered, &o.changedAt)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("central: verify: %w", err)
	}
	want := map[string]bool{}
	for _, o := range opts.Origins {
		want[o] = true
	}
	if len(want) == 0 {
		for o := range opts.Keys {
			want[o] = true
		}
	}
	var reps []*OriginReport
	seen := map[string]bool{}
	for _, o := range origins {
		if len(opts.Origins) > 0 && !want[o.origin] {
			continue
		}
		seen[o.origin] = true
		reps = append(reps, verifyOrigin(ctx, db, o, opts.Keys[o.origin]))
	}
	// Asked-for or pinned origins the database does not have.
	var absent []string
	for o := range want {
		if !seen[o] {
			absent = append(absent, o)
		}
	}
	slices.Sort(absent)
	for _, o := range absent {
		r := &OriginReport{Origin: o, KeyPinned: opts.Keys[o] != ""}
		if r.KeyPinned {
			r.Problem = "missing: the key is pinned but the database has no record of this origin (deleted?)"
		} else {
			r.Error = "the database has no record of this origin"
		}
		reps = append(reps, r)
	}
	return reps, nil
}

// checkSchema refuses a database without sessctl's tables, or with a
// schema newer than this binary knows.
func checkSchema(ctx context.Context, db *DB) error {
	v, err := SchemaVersion(ctx, db.Pool)
	if err != nil {
		return fmt.Errorf("central: verify: not a sessctl database, or unreachable: %w", err)
	}
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if known := ms[len(ms)-1].Version; v > known {
		return fmt.Errorf("%w: the database is at version %04d, this sessctl knows up to %04d", ErrSchemaTooNew, v, known)
	}
	return nil
}

func verifyOrigin(ctx context.Context, db *DB, o originRow, pinned string) *OriginReport {
	r := &OriginReport{Origin: o.origin, FirstSeen: o.firstSeen, KeyPinned: pinned != ""}
	key := o.key
	if pinned != "" {
		key = pinned
	}
	tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer tx.Rollback(ctx)
	l := &pgLog{ctx: ctx, tx: tx, id: o.id, origin: o.origin, key: key, page: 2000}
	opts := store.VerifyOptions{}
	if pinned != "" {
		opts.PublicKey = pinned
	}
	rep, err := store.VerifyStored(l, opts)
	switch {
	case errors.Is(err, store.ErrWrongKey):
		r.Problem = "record 0: modified (its genesis names another key than the pinned one: " + err.Error() + ")"
	case err != nil:
		r.Error = err.Error()
	default:
		r.Report = rep
		if cp := l.newestCheckpoint(); rep.Records > cp {
			r.Unvouched = rep.Records - cp
		}
	}
	if o.keyChanged {
		at := ""
		if o.changedAt != nil {
			at = " at " + o.changedAt.UTC().Format(time.RFC3339)
		}
		offered := ""
		if o.offered != nil {
			offered = *o.offered
		}
		r.Problem = fmt.Sprintf("key changed: first seen with %s, a shipper offered %s%s", o.key, offered, at)
	}
	if pinned != "" && r.Problem == "" && o.key != pinned && r.Report != nil {
		r.Problem = fmt.Sprintf("key changed: the database recorded %s, the pinned key is %s", o.key, pinned)
	}
	return r
}

// pgLog is one origin's rows read in one snapshot: a store.StoredLog. It
// reads the leaves in pages (with their bodies), so that other lookups can
// run between them on the same connection.
type pgLog struct {
	ctx         context.Context
	tx          pgx.Tx
	id          int32
	origin, key string
	page        int
	err         error
	cps         map[uint64][]byte
	// The current page, by seq.
	hashes map[uint64][]byte
	bodies map[bodyRef]*store.SealedBody
}

type bodyRef struct {
	seq      uint64
	response bool
}

func (l *pgLog) Origin() string    { return l.origin }
func (l *pgLog) PublicKey() string { return l.key }
func (l *pgLog) Err() error        { return l.err }

func (l *pgLog) fail(err error) {
	if l.err == nil && err != nil {
		l.err = err
	}
}

func (l *pgLog) Cursor() store.LeafCursor { return &pgCursor{l: l} }

func (l *pgLog) Checkpoints() (map[uint64][]byte, error) {
	rows, err := l.tx.Query(l.ctx, `SELECT size, note FROM sessctl_checkpoints WHERE origin_id = $1 ORDER BY size`, l.id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	l.cps = map[uint64][]byte{}
	for rows.Next() {
		var size int64
		var msg []byte
		if err := rows.Scan(&size, &msg); err != nil {
			return nil, err
		}
		l.cps[uint64(size)] = msg
	}
	return l.cps, rows.Err()
}

// newestCheckpoint is the largest validly signed checkpoint size.
func (l *pgLog) newestCheckpoint() int64 {
	var n int64
	for size, msg := range l.cps {
		if _, err := store.OpenCheckpoint(msg, l.key); err == nil && int64(size) > n {
			n = int64(size)
		}
	}
	return n
}

func (l *pgLog) Body(seq uint64, response bool) *store.SealedBody {
	if b, ok := l.bodies[bodyRef{seq, response}]; ok {
		return b
	}
	if _, ok := l.hashes[seq]; ok {
		return nil // in the page: no body
	}
	part := "request"
	if response {
		part = "response"
	}
	var b store.SealedBody
	err := l.tx.QueryRow(l.ctx, `SELECT salt, body FROM sessctl_bodies WHERE origin_id = $1 AND seq = $2 AND part = $3`, l.id, int64(seq), part).Scan(&b.Salt, &b.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		l.fail(err)
		return nil
	}
	return &b
}

func (l *pgLog) LeafHash(seq uint64) []byte {
	if h, ok := l.hashes[seq]; ok {
		return h
	}
	if seq > 1<<62 {
		return nil
	}
	var h []byte
	err := l.tx.QueryRow(l.ctx, `SELECT leaf_hash FROM sessctl_leaves WHERE origin_id = $1 AND seq = $2`, l.id, int64(seq)).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	l.fail(err)
	return h
}

// pgCursor walks the origin's leaves in seq order, a page at a time.
type pgCursor struct {
	l    *pgLog
	rows []pgLeaf
	i    int
	last int64 // seq of the last row read; -1 before the first
	done bool
}

type pgLeaf struct {
	seq  int64
	leaf []byte
}

func (c *pgCursor) First() ([]byte, []byte) {
	c.rows, c.i, c.last, c.done = nil, 0, -1, false
	return c.Next()
}

func (c *pgCursor) Next() ([]byte, []byte) {
	if c.i >= len(c.rows) {
		if c.done || !c.fetch() {
			return nil, nil
		}
	}
	r := c.rows[c.i]
	c.i++
	return binary.BigEndian.AppendUint64(nil, uint64(r.seq)), r.leaf
}

// fetch reads the next page and its bodies; false at the end or on error.
func (c *pgCursor) fetch() bool {
	l := c.l
	rows, err := l.tx.Query(l.ctx, `SELECT l.seq, l.leaf, l.leaf_hash, q.salt, q.body, r.salt, r.body
FROM sessctl_leaves l
LEFT JOIN sessctl_bodies q ON q.origin_id = l.origin_id AND q.seq = l.seq AND q.part = 'request'
LEFT JOIN sessctl_bodies r ON r.origin_id = l.origin_id AND r.seq = l.seq AND r.part = 'response'
WHERE l.origin_id = $1 AND l.seq > $2
ORDER BY l.seq
LIMIT $3`, l.id, c.last, l.page)
	if err != nil {
		l.fail(err)
		c.done = true
		return false
	}
	defer rows.Close()
	c.rows, c.i = c.rows[:0], 0
	l.hashes = map[uint64][]byte{}
	l.bodies = map[bodyRef]*store.SealedBody{}
	for rows.Next() {
		var r pgLeaf
		var hash, qs, qb, rs, rb []byte
		if err := rows.Scan(&r.seq, &r.leaf, &hash, &qs, &qb, &rs, &rb); err != nil {
			l.fail(err)
			c.done = true
			return false
		}
		c.rows = append(c.rows, r)
		l.hashes[uint64(r.seq)] = hash
		if qs != nil {
			l.bodies[bodyRef{uint64(r.seq), false}] = &store.SealedBody{Salt: qs, Body: qb}
		}
		if rs != nil {
			l.bodies[bodyRef{uint64(r.seq), true}] = &store.SealedBody{Salt: rs, Body: rb}
		}
		c.last = r.seq
	}
	if err := rows.Err(); err != nil {
		l.fail(err)
		c.done = true
		return false
	}
	if len(c.rows) < l.page {
		c.done = true
	}
	return len(c.rows) > 0
}
