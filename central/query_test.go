package central

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/store"
)

// fleetOf ships two logs (records 0-29 and 100-119 of record()) into one
// database and returns the fleet source with the two stores.
func fleetOf(t *testing.T) (*DB, *Fleet, *store.Store, *store.Store) {
	t.Helper()
	_, db := openDB(t)
	a, b := openLog(t, 7), openLog(t, 7)
	appendN(t, a, 0, 30)
	appendN(t, b, 100, 20)
	ship(t, db, a)
	ship(t, db, b)
	return db, NewFleet(db.Pool), a, b
}

func list(t *testing.T, src *Fleet, f store.Filter) []*store.Record {
	t.Helper()
	var out []*store.Record
	if err := src.List(f, func(r *store.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// want lists, newest first, the record() indexes of both logs that match.
func want(match func(i int, r *store.Record) bool) []string {
	var out []string
	for _, i := range slices.Concat(seqRange(0, 30), seqRange(100, 20)) {
		if match(i, record(i)) {
			out = append(out, fmt.Sprint(i))
		}
	}
	slices.Reverse(out)
	return out
}

func seqRange(from, n int) []int {
	var s []int
	for i := from; i < from+n; i++ {
		s = append(s, i)
	}
	return s
}

// indexes maps listed records back to record() indexes through their
// session ids, checking each names its origin.
func indexes(t *testing.T, recs []*store.Record, a, b *store.Store) []string {
	t.Helper()
	var out []string
	for _, r := range recs {
		i := strings.TrimLeft(strings.TrimPrefix(r.SessionID, "0190c3a0-0000-7000-8000-"), "0")
		if i == "" {
			i = "0"
		}
		wantOrigin := a.Origin()
		if len(i) >= 3 {
			wantOrigin = b.Origin()
		}
		if r.Origin != wantOrigin {
			t.Fatalf("record %s (seq %d) has origin %q, want %q", i, r.Seq, r.Origin, wantOrigin)
		}
		out = append(out, i)
	}
	return out
}

func TestFleetList(t *testing.T) {
	db, fleet, a, b := fleetOf(t)
	exch := store.Filter{Kind: store.KindExchange}
	for _, tc := range []struct {
		name  string
		f     store.Filter
		match func(i int, r *store.Record) bool
	}{
		{"all exchanges", exch, func(int, *store.Record) bool { return true }},
		{"runner", store.Filter{Runner: "runner-1"}, func(_ int, r *store.Record) bool { return r.Identity.Runner == "runner-1" }},
		{"run", store.Filter{Run: "1003"}, func(_ int, r *store.Record) bool { return r.Identity.Claims["run_id"] == "1003" }},
		{"rule", store.Filter{Rule: "aws-key"}, func(_ int, r *store.Record) bool { return len(r.Rules) > 0 }},
		{"sha abbreviation", store.Filter{SHA: "0123456", Run: "1001"}, func(_ int, r *store.Record) bool { return r.Identity.Claims["run_id"] == "1001" }},
		{"sha too short", store.Filter{SHA: "012345"}, func(int, *store.Record) bool { return false }},
		{"session", store.Filter{Session: record(104).SessionID}, func(i int, _ *store.Record) bool { return i == 104 }},
		{"since", store.Filter{Kind: store.KindExchange, Since: record(110).Start}, func(i int, _ *store.Record) bool { return i >= 110 }},
		{"until", store.Filter{Kind: store.KindExchange, Until: record(3).Start}, func(i int, _ *store.Record) bool { return i < 3 }},
		{"repo and runner", store.Filter{Repo: "acme/app", Runner: "runner-2", Outcome: store.OutcomeForwarded}, func(_ int, r *store.Record) bool { return r.Identity.Runner == "runner-2" }},
		{"no such repo", store.Filter{Repo: "acme/none"}, func(int, *store.Record) bool { return false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := indexes(t, list(t, fleet, tc.f), a, b)
			if w := want(tc.match); !slices.Equal(got, w) {
				t.Fatalf("got  %v\nwant %v", got, w)
			}
		})
	}

	// Pages: a limit stops early; more than one internal batch still
	// comes out whole and in order.
	if got := list(t, fleet, store.Filter{Kind: store.KindExchange, Limit: 4}); len(got) != 4 || got[0].SessionID != record(119).SessionID {
		t.Fatalf("limit 4: %d records, first %+v", len(got), got[0])
	}
	small := *fleet
	if got := indexes(t, list(t, small.Only(a.Origin()), exch), a, b); !slices.Equal(got, want(func(i int, _ *store.Record) bool { return i < 100 })) {
		t.Fatalf("only A: %v", got)
	}

	// A row whose query columns were altered is not believed: the leaf
	// decides.
	if _, err := db.Pool.Exec(context.Background(), `UPDATE sessctl_leaves SET runner = 'runner-1' WHERE session_id = $1`, record(102).SessionID); err != nil {
		t.Fatal(err)
	}
	if got := indexes(t, list(t, fleet, store.Filter{Runner: "runner-1"}), a, b); slices.Contains(got, "102") {
		t.Fatalf("a record listed by an altered column: %v", got)
	}
}

func TestFleetGetAndLeaves(t *testing.T) {
	_, fleet, a, b := fleetOf(t)
	// Both logs have a record 5.
	if _, _, _, err := fleet.Get("5"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("Get(5): %v", err)
	}
	rec, req, resp, err := fleet.Get("5@" + b.Origin())
	if err != nil {
		t.Fatal(err)
	}
	want, wreq, wresp, err := b.Get("5")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Origin != b.Origin() || rec.SessionID != want.SessionID || !bytes.Equal(req, wreq) || !bytes.Equal(resp, wresp) {
		t.Fatalf("Get(5@B) = %+v %q %q", rec, req, resp)
	}
	if rec, _, _, err := fleet.Get(record(7).SessionID); err != nil || rec.Origin != a.Origin() {
		t.Fatalf("Get(session of 7): %+v %v", rec, err)
	}
	if rec, _, _, err := fleet.Only(a.Origin()).Get("5"); err != nil || rec.Origin != a.Origin() {
		t.Fatalf("Only(A).Get(5): %+v %v", rec, err)
	}
	for _, id := range []string{"999@" + a.Origin(), "5@nowhere/0", "no-such-session", "@x"} {
		if _, _, _, err := fleet.Get(id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q): %v, want not found", id, err)
		}
	}

	// Leaves hands out exactly the store's bytes.
	type leaf struct {
		seq             uint64
		leaf, req, resp string
	}
	collect := func(src interface {
		Leaves(uint64, func(uint64, []byte, []byte, []byte) error) error
	}, from uint64) []leaf {
		var out []leaf
		if err := src.Leaves(from, func(seq uint64, l, rq, rs []byte) error {
			out = append(out, leaf{seq, string(l), string(rq), string(rs)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, from := range []uint64{0, 9} {
		if got, w := collect(fleet.Only(a.Origin()), from), collect(a, from); !slices.Equal(got, w) || len(w) == 0 {
			t.Fatalf("Leaves(%d): %d leaves, the store has %d (or they differ)", from, len(got), len(w))
		}
	}
	if err := fleet.Leaves(0, func(uint64, []byte, []byte, []byte) error { return nil }); err == nil {
		t.Fatal("Leaves over several origins did not refuse")
	}
}

func TestFleetLeavesBreak(t *testing.T) {
	db, fleet, a, _ := fleetOf(t)
	if _, err := db.Pool.Exec(context.Background(), `DELETE FROM sessctl_leaves WHERE seq = 12 AND origin_id = (SELECT id FROM sessctl_origins WHERE origin = $1)`, a.Origin()); err != nil {
		t.Fatal(err)
	}
	var n int
	err := fleet.Only(a.Origin()).Leaves(0, func(uint64, []byte, []byte, []byte) error { n++; return nil })
	if err == nil || !strings.Contains(err.Error(), "record 12 is missing") || n != 12 {
		t.Fatalf("after deleting record 12: %d leaves, %v", n, err)
	}
}
