package central

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/pgtest"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openDB starts a throwaway cluster and opens it.
func openDB(t testing.TB) (*pgtest.Server, *DB) {
	t.Helper()
	pg := pgtest.Start(t)
	db, err := Open(context.Background(), pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return pg, db
}

// openDBIn creates a fresh database in the cluster pg and opens it.
func openDBIn(t testing.TB, pg *pgtest.Server, name string) *DB {
	t.Helper()
	admin, err := Open(context.Background(), pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Pool.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	db, err := Open(context.Background(), strings.Replace(pg.DSN, "/postgres?", "/"+name+"?", 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// openLog opens a fresh session log in a temporary directory.
func openLog(t testing.TB, every int) *store.Store {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "sessions.db"), store.Options{NoSync: true, CheckpointEvery: every, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func record(i int) *store.Record {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	r := &store.Record{
		Kind:      store.KindExchange,
		SessionID: fmt.Sprintf("0190c3a0-0000-7000-8000-%012d", i),
		Start:     start,
		End:       start.Add(300 * time.Millisecond),
		Identity: store.Identity{Method: "oidc", Runner: fmt.Sprintf("runner-%d", i%3),
			Claims: map[string]string{"repository": "acme/app", "run_id": fmt.Sprint(1000 + i%5), "sha": "0123456789abcdef", "actor": "ada", "workflow": "ci"}},
		Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o-mini",
		Status: 200, Outcome: store.OutcomeForwarded, Recording: store.RecordingFull,
		RequestBody:  []byte(fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}]}`, i)),
		ResponseBody: []byte(fmt.Sprintf(`{"choices":[{"message":{"content":"answer %d"}}]}`, i)),
	}
	if i%4 == 0 {
		r.Rules = []store.RuleHit{{Name: "aws-key", Action: "mask", Scope: "request", Count: 1}, {Name: "aws-key", Action: "mask", Scope: "request", Count: 1}}
	}
	return r
}

func appendN(t testing.TB, st *store.Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := st.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// ship runs a shipper until it has shipped the whole log.
func ship(t *testing.T, db *DB, st *store.Store) *Shipper {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sh := NewShipper(db, st, ShipperOptions{Logger: quiet(), Poll: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sh.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	waitShipped(t, sh, st)
	return sh
}

func waitShipped(t *testing.T, sh *Shipper, st *store.Store) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "the shipper to catch up", func() bool {
		n, _ := st.Size()
		s := sh.Status()
		return s.Known && s.Shipped == n && s.Lag == 0
	})
}

func verifyAll(t *testing.T, db *DB, opts VerifyOptions) []*OriginReport {
	t.Helper()
	reps, err := Verify(context.Background(), db, opts)
	if err != nil {
		t.Fatal(err)
	}
	return reps
}

func count(t *testing.T, db *DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestShipAndVerify(t *testing.T) {
	_, db := openDB(t)
	a, b := openLog(t, 7), openLog(t, 5)
	appendN(t, a, 0, 40)
	appendN(t, b, 100, 25)
	shA := ship(t, db, a)
	ship(t, db, b)
	// More records after catching up are shipped too.
	appendN(t, a, 40, 10)
	waitShipped(t, shA, a)

	keys := map[string]string{a.Origin(): a.PublicKey(), b.Origin(): b.PublicKey()}
	reps := verifyAll(t, db, VerifyOptions{Keys: keys})
	if len(reps) != 2 {
		t.Fatalf("%d reports, want 2", len(reps))
	}
	for _, r := range reps {
		if r.Status() != 0 || !strings.HasPrefix(r.Line(), "ok: origin "+r.Origin+": ") || !r.KeyPinned {
			t.Fatalf("%s: %s (%+v)", r.Origin, r.Line(), r.Report)
		}
	}
	// Every record once, bytes exactly as stored, bodies and checkpoints.
	for _, st := range []*store.Store{a, b} {
		n, _ := st.Size()
		if got := count(t, db, `SELECT count(*) FROM sessctl_leaves l JOIN sessctl_origins o ON o.id = l.origin_id WHERE o.origin = $1`, st.Origin()); got != int(n) {
			t.Fatalf("%s: %d rows, want %d", st.Origin(), got, n)
		}
		if err := st.StoredRecords(0, func(r store.StoredRecord) error {
			var leaf []byte
			if err := db.Pool.QueryRow(context.Background(), `SELECT leaf FROM sessctl_leaves l JOIN sessctl_origins o ON o.id = l.origin_id WHERE o.origin = $1 AND seq = $2`, st.Origin(), int64(r.Seq)).Scan(&leaf); err != nil {
				return err
			}
			if string(leaf) != string(r.Leaf) {
				return fmt.Errorf("record %d differs", r.Seq)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var cps int
		st.Checkpoints(0, func(uint64, []byte) error { cps++; return nil })
		if got := count(t, db, `SELECT count(*) FROM sessctl_checkpoints c JOIN sessctl_origins o ON o.id = c.origin_id WHERE o.origin = $1`, st.Origin()); got != cps {
			t.Fatalf("%s: %d checkpoints shipped, the log has %d", st.Origin(), got, cps)
		}
	}
	if got := count(t, db, `SELECT count(*) FROM sessctl_bodies`); got != 2*(50+25) {
		t.Fatalf("%d bodies, want %d", got, 2*75)
	}
	// Query columns.
	if got := count(t, db, `SELECT count(*) FROM sessctl_leaves WHERE repository = 'acme/app' AND workflow = 'ci' AND runner = 'runner-1' AND 'aws-key' = ANY(rules)`); got == 0 {
		t.Fatal("no rows by repository, workflow, runner and rule")
	}
	if got := count(t, db, `SELECT count(*) FROM sessctl_leaves WHERE rules = ARRAY['aws-key']`); got == 0 {
		t.Fatal("rules are not the distinct names")
	}
	// Without pinned keys: trusted as first seen.
	for _, r := range verifyAll(t, db, VerifyOptions{Origins: []string{b.Origin()}}) {
		if r.Status() != 0 || r.KeyPinned || r.Origin != b.Origin() {
			t.Fatalf("unpinned %s: %s", r.Origin, r.Line())
		}
	}
}

// TestShipOutage stops PostgreSQL while records are appended: the log
// keeps recording, and the shipper catches up without gaps or duplicates.
func TestShipOutage(t *testing.T) {
	pg, db := openDB(t)
	st := openLog(t, 10)
	appendN(t, st, 0, 20)
	sh := ship(t, db, st)
	pg.Stop()
	appendN(t, st, 20, 30) // the log does not depend on PostgreSQL
	testutil.WaitFor(t, 10*time.Second, "the shipper to notice the outage", func() bool { return sh.Status().Error != "" })
	if s := sh.Status(); s.Lag != 30 {
		t.Fatalf("lag %d while down, want 30", s.Lag)
	}
	pg.Start()
	waitShipped(t, sh, st)
	if got := count(t, db, `SELECT count(*) FROM sessctl_leaves`); got != 51 {
		t.Fatalf("%d rows after the outage, want 51", got)
	}
	if r := verifyAll(t, db, VerifyOptions{Keys: map[string]string{st.Origin(): st.PublicKey()}}); r[0].Status() != 0 {
		t.Fatal(r[0].Line())
	}
}

// TestShipResume ships with a new shipper (a restart) and with two at once.
func TestShipResume(t *testing.T) {
	_, db := openDB(t)
	st := openLog(t, 10)
	appendN(t, st, 0, 15)
	ctx, cancel := context.WithCancel(context.Background())
	sh1 := NewShipper(db, st, ShipperOptions{Logger: quiet(), Batch: 4, Poll: 10 * time.Millisecond})
	go sh1.Run(ctx)
	waitShipped(t, sh1, st)
	cancel()
	appendN(t, st, 15, 15)
	// Two shippers of the same log at once: rows already there are
	// compared, never duplicated.
	var shs []*Shipper
	for range 2 {
		sh := NewShipper(db, st, ShipperOptions{Logger: quiet(), Batch: 3, Poll: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go sh.Run(ctx)
		shs = append(shs, sh)
	}
	for _, sh := range shs {
		waitShipped(t, sh, st)
	}
	if got := count(t, db, `SELECT count(*) FROM sessctl_leaves`); got != 31 {
		t.Fatalf("%d rows, want 31", got)
	}
	if r := verifyAll(t, db, VerifyOptions{}); r[0].Status() != 0 {
		t.Fatal(r[0].Line())
	}
}

// TestShipRefusesDivergence: rows of the origin that differ from the local
// log are never overwritten, and a different key is flagged.
func TestShipRefusesDivergence(t *testing.T) {
	_, db := openDB(t)
	ctx := context.Background()
	st := openLog(t, 10)
	appendN(t, st, 0, 5)
	sh := ship(t, db, st)
	// Alter the newest shipped row: the shipper stops and says so.
	if _, err := db.Pool.Exec(ctx, `UPDATE sessctl_leaves SET leaf = leaf || ' '::bytea, leaf_hash = '\x00' WHERE seq = 5`); err != nil {
		t.Fatal(err)
	}
	sh2 := NewShipper(db, st, ShipperOptions{Logger: quiet(), MaxBackoff: 50 * time.Millisecond})
	ctx2, cancel := context.WithCancel(ctx)
	defer cancel()
	go sh2.Run(ctx2)
	testutil.WaitFor(t, 10*time.Second, "the shipper to refuse", func() bool {
		return strings.Contains(sh2.Status().Error, "differs from the local log")
	})
	_ = sh

	// Another key for the origin: flagged, not replaced.
	if _, err := db.Pool.Exec(ctx, `UPDATE sessctl_origins SET public_key = 'someone+00000000+AAAA'`); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the key change to be flagged", func() bool {
		return count(t, db, `SELECT count(*) FROM sessctl_origins WHERE key_changed AND offered_key = $1`, st.PublicKey()) == 1
	})
	r := verifyAll(t, db, VerifyOptions{})
	if r[0].Status() != 1 || !strings.Contains(r[0].Line(), "key changed") {
		t.Fatalf("after a key change: %s", r[0].Line())
	}
}

// TestVerifyTampering: what a database administrator could do to the rows
// is found and named with its origin and sequence number.
func TestVerifyTampering(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Start(t)
	for i, tc := range []struct {
		name, sql, want string
	}{
		{"leaf bytes updated", `UPDATE sessctl_leaves SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), 'runner-', 'runner+'), 'UTF8') WHERE seq = 12`, "record 12: modified"},
		{"leaf updated with its hash", `UPDATE sessctl_leaves SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), 'runner-', 'runner+'), 'UTF8'), leaf_hash = sha256('\x00'::bytea || convert_to(replace(convert_from(leaf, 'UTF8'), 'runner-', 'runner+'), 'UTF8')) WHERE seq = 30`,
			// With the hash rewritten too, the links cannot tell a changed
			// record 30 from a changed prev in record 31 (FORMAT.md §6);
			// the checkpoint of size 31 can.
			"record 30: checkpoint mismatch"},
		{"row deleted", `DELETE FROM sessctl_leaves WHERE seq = 9`, "record 9: missing"},
		{"genesis deleted", `DELETE FROM sessctl_leaves WHERE seq = 0`, "record 0: missing"},
		{"all rows deleted", `DELETE FROM sessctl_leaves`, "record 0: missing"},
		{"rows swapped", `UPDATE sessctl_leaves l SET leaf = o.leaf, leaf_hash = o.leaf_hash FROM sessctl_leaves o WHERE o.origin_id = l.origin_id AND ((l.seq = 15 AND o.seq = 16) OR (l.seq = 16 AND o.seq = 15))`, "record 15: reordered"},
		{"row inserted", `INSERT INTO sessctl_leaves (origin_id, seq, leaf, leaf_hash, start_time, kind) SELECT origin_id, 41, leaf, leaf_hash, start_time, kind FROM sessctl_leaves WHERE seq = 3`, "record 41: inserted"},
		{"body updated", `UPDATE sessctl_bodies SET body = body || ' '::bytea WHERE seq = 7 AND part = 'response'`, "record 7: body modified"},
		{"checkpoint replaced", `UPDATE sessctl_checkpoints SET note = (SELECT note FROM sessctl_checkpoints WHERE size = 11) WHERE size = 21`, "record 20: checkpoint mismatch"},
		{"checkpoint edited", `UPDATE sessctl_checkpoints SET note = convert_to(replace(convert_from(note, 'UTF8'), E'\n21\n', E'\n22\n'), 'UTF8') WHERE size = 21`, "record 20: bad checkpoint signature"},
		{"covered rows deleted", `DELETE FROM sessctl_leaves WHERE seq >= 35`, "record 35: truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openDBIn(t, pg, fmt.Sprintf("tamper_%d", i))
			st := openLog(t, 10)
			appendN(t, st, 0, 40)
			ship(t, db, st)
			if _, err := db.Pool.Exec(ctx, tc.sql); err != nil {
				t.Fatal(err)
			}
			r := verifyAll(t, db, VerifyOptions{Keys: map[string]string{st.Origin(): st.PublicKey()}})
			want := "origin " + st.Origin() + ": " + tc.want
			if len(r) != 1 || r[0].Status() != 1 || !strings.HasPrefix(r[0].Line(), want) {
				t.Fatalf("got %q (status %d), want %q…", r[0].Line(), r[0].Status(), want)
			}
		})
	}
}
