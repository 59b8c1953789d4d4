package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// appendBulk appends recs in one transaction through the appender, much
// faster than one Append each: for building large logs in tests and
// benchmarks.
func appendBulk(s *Store, recs []*Record) error {
	jobs := make([]*job, len(recs))
	for i, r := range recs {
		j, err := newJob(r)
		if err != nil {
			return err
		}
		jobs[i] = j
	}
	bulk := &job{done: make(chan struct{})}
	bulk.fn = func(tx *bbolt.Tx, st *chainState) error {
		for _, j := range jobs {
			assign(st, j)
			if err := s.applyTx(tx, st, j); err != nil {
				return err
			}
		}
		return nil
	}
	return s.submit(context.Background(), bulk)
}

// Values of the indexed test log that need care: one that extends another
// with 0x00, and ones too long to be indexed as they are.
var (
	nulRepo  = "acme/a\x00x"
	longSHA  = "abcdef0" + strings.Repeat("9", 200)
	longUser = strings.Repeat("u", 300)
	htmlRepo = "o'<b>&\"ü\\\t/x"
)

func testSHA(k int) string { return fmt.Sprintf("abcdef%034x", k) }

// indexedRecord is record i of a log that exercises every indexed field:
// GitHub and GitLab claims, runners, outcomes, hosts, rules (repeated in
// one record), approvals sharing a session with their exchange, records
// sharing a start time, and the awkward values above.
func indexedRecord(i int) *Record {
	r := exchange(i)
	r.RequestBody, r.ResponseBody = nil, nil
	if i%9 == 1 {
		// Same start as record i-1.
		r.Start = exchange(i - 1).Start
	}
	switch i % 4 {
	case 0:
		r.Identity = Identity{Method: "oidc", Claims: map[string]string{
			"repository": fmt.Sprintf("acme/r%d", i%5), "run_id": fmt.Sprint(i / 7), "sha": testSHA(i % 11), "actor": fmt.Sprintf("u%d", i%3)}}
	case 1:
		r.Identity = Identity{Method: "oidc", Claims: map[string]string{
			"project_path": fmt.Sprintf("acme/r%d", i%5), "pipeline_id": fmt.Sprint(i / 7), "sha": testSHA(i % 11), "user_login": fmt.Sprintf("u%d", i%3)}}
	case 2:
		// Both: the GitHub claim wins.
		r.Identity = Identity{Method: "oidc", Claims: map[string]string{
			"repository": "acme/a", "project_path": "grp/ignored", "run_id": fmt.Sprint(i / 7), "pipeline_id": "ignored"}}
	}
	switch i % 17 {
	case 3:
		r.Identity.Claims = map[string]string{"repository": nulRepo, "sha": longSHA, "actor": longUser}
	case 4:
		r.Identity.Claims = map[string]string{"repository": htmlRepo, "sha": "ü" + testSHA(4)}
	case 5:
		r.Identity.Claims = map[string]string{"repository": "acme/a", "sha": testSHA(3)[:20]}
	}
	if i%6 == 0 {
		r.Outcome = OutcomeBlocked
	}
	if i%8 == 0 {
		r.Host = "example.com"
	}
	switch i % 5 {
	case 0:
		r.Rules = []RuleHit{{Name: "aws-key", Action: "mask"}, {Name: "aws-key", Action: "mask", Scope: "response"}, {Name: "pem", Action: "mask"}}
	case 1:
		r.Rules = []RuleHit{{Name: "pem", Action: "block"}}
	}
	if i%13 == 12 {
		// The approval decision on record i-1's held request.
		r.Kind, r.SessionID, r.Outcome = KindApproval, exchange(i-1).SessionID, ""
		r.Approval = &Approval{ID: "a", Decision: "approved", By: "alice"}
	}
	return r
}

// buildIndexedLog writes genesis and n indexed records, 40 a transaction,
// with index keys written every 64 records: the index covers most of the
// log, and the last records are still to be indexed (unless n is a
// multiple of 80). It returns the open store and its path.
func buildIndexedLog(t *testing.T, n int) (*Store, string) {
	t.Helper()
	s, path := openTest(t, Options{NoSync: true, indexEvery: 64})
	recs := make([]*Record, n)
	for i := range recs {
		recs[i] = indexedRecord(i)
	}
	for i := 0; i < n; i += 40 {
		if err := appendBulk(s, recs[i:min(i+40, n)]); err != nil {
			t.Fatal(err)
		}
	}
	return s, path
}

// lister is what TestListIndexed compares: a Store or a Reader.
type lister interface {
	List(Filter, func(*Record) error) error
}

// bruteList is List by definition: every record, filtered, newest first.
func bruteList(t *testing.T, all []*Record, f Filter) []uint64 {
	t.Helper()
	var got []*Record
	for _, r := range all {
		if f.Match(r) && (f.Since.IsZero() || !r.Start.Before(f.Since)) && (f.Until.IsZero() || r.Start.Before(f.Until)) {
			got = append(got, r)
		}
	}
	slices.SortFunc(got, func(a, b *Record) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return int(b.Seq) - int(a.Seq)
	})
	var seqs []uint64
	for _, r := range got {
		if f.Limit > 0 && len(seqs) == f.Limit {
			break
		}
		seqs = append(seqs, r.Seq)
	}
	return seqs
}

// fstr prints a filter with its awkward values quoted.
func fstr(f Filter) string { return strconv.Quote(fmt.Sprintf("%+v", f)) }

func listSeqs(t *testing.T, l lister, f Filter) []uint64 {
	t.Helper()
	var seqs []uint64
	if err := l.List(f, func(r *Record) error { seqs = append(seqs, r.Seq); return nil }); err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	return seqs
}

// indexFilter is a filter TestListIndexed checks; none says that it
// matches no record of the test log (without time bounds).
type indexFilter struct {
	f    Filter
	none bool
}

// indexFilters are the filters TestListIndexed checks, each also with
// time bounds and a limit.
func indexFilters() []indexFilter {
	at := func(i int) time.Time { return exchange(i).Start }
	fs := []indexFilter{
		{f: Filter{}},
		{f: Filter{Repo: "acme/r2"}},
		{f: Filter{Repo: "acme/a"}},
		{f: Filter{Repo: nulRepo}},
		{f: Filter{Repo: "acme/a\x00"}, none: true},
		{f: Filter{Repo: htmlRepo}},
		{f: Filter{SHA: "ü" + testSHA(4)[:6]}},
		{f: Filter{SHA: "ü\xc3"}, none: true}, // not UTF-8
		{f: Filter{Repo: "grp/ignored"}, none: true},
		{f: Filter{Repo: "acme/r3", Run: "1"}}, // one GitHub and one GitLab record
		{f: Filter{Run: "3"}},
		{f: Filter{Run: "ignored"}, none: true},
		{f: Filter{SHA: testSHA(3)}},
		{f: Filter{SHA: testSHA(3)[:7]}},             // abbreviation: matches every testSHA
		{f: Filter{SHA: testSHA(3)[:6]}, none: true}, // too short to abbreviate: exact only
		{f: Filter{SHA: testSHA(3)[:20]}},            // exact for one record, a prefix of others
		{f: Filter{SHA: longSHA}},
		{f: Filter{SHA: longSHA[:150]}},
		{f: Filter{Actor: "u1"}},
		{f: Filter{Actor: longUser}},
		{f: Filter{Actor: longUser[:200]}, none: true},
		{f: Filter{Rule: "aws-key"}},
		{f: Filter{Rule: "pem", Outcome: OutcomeBlocked}},
		{f: Filter{Runner: "runner-1", Kind: KindExchange}},
		{f: Filter{Outcome: OutcomeBlocked, Host: "example.com"}},
		{f: Filter{Kind: KindApproval}},
		{f: Filter{Kind: KindExchange, Outcome: OutcomeForwarded}}, // not indexed: the time index
		{f: Filter{Kind: KindExchange, Repo: "acme/r2"}},
		{f: Filter{Kind: "restore"}, none: true},
		{f: Filter{Session: exchange(11).SessionID}},
		{f: Filter{Session: exchange(11).SessionID, Kind: KindApproval}},
		{f: Filter{Repo: "acme/r1", Actor: "u2", Rule: "pem"}},
		{f: Filter{Repo: "no/such"}, none: true},
	}
	var out []indexFilter
	for _, x := range fs {
		out = append(out, x)
		g := x.f
		g.Since, g.Until = at(40), at(150)
		out = append(out, indexFilter{f: g})
		g = x.f
		g.Until, g.Limit = at(101), 3
		out = append(out, indexFilter{f: g})
		g = x.f
		g.Since = at(1) // shared with record 0: inclusive
		out = append(out, indexFilter{f: g})
	}
	return out
}

func TestListIndexed(t *testing.T) {
	const n = 300
	s, path := buildIndexedLog(t, n)
	var all []*Record
	if err := s.List(Filter{}, func(r *Record) error { all = append(all, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != n+1 {
		t.Fatalf("%d records, want %d", len(all), n+1)
	}
	check := func(t *testing.T, l lister) {
		t.Helper()
		for _, x := range indexFilters() {
			want, got := bruteList(t, all, x.f), listSeqs(t, l, x.f)
			if !slices.Equal(got, want) {
				t.Errorf("List(%s) = %v, want %v", fstr(x.f), got, want)
			}
		}
	}
	// The filters select what they mean to, or the comparison proves little.
	for _, x := range indexFilters() {
		if x.f.Since.IsZero() && x.f.Until.IsZero() && (len(bruteList(t, all, x.f)) == 0) != x.none {
			t.Fatalf("%s matches %d records", fstr(x.f), len(bruteList(t, all, x.f)))
		}
	}
	// tailOf returns how many records lie beyond meta/indexed, or -1 if
	// the index cannot serve queries.
	tailOf := func(db *bbolt.DB) int {
		tail := -1
		db.View(func(tx *bbolt.Tx) error {
			if ix, indexed := usableIndex(tx); ix != nil {
				tail = int(lastSeq(tx) + 1 - indexed)
			}
			return nil
		})
		return tail
	}
	t.Run("live", func(t *testing.T) {
		if tail := tailOf(s.db); tail != 60 {
			t.Fatalf("%d records not indexed yet, want 60", tail)
		}
		check(t, s)
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	all = append(all, nil) // the shutdown record, read back below
	withReader := func(t *testing.T, wantTail int) {
		t.Helper()
		r, err := OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		all = all[:0]
		if err := r.Leaves(0, func(seq uint64, leaf, _, _ []byte) error {
			rec, err := DecodeLeaf(leaf)
			all = append(all, rec)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if tail := tailOf(r.db); tail != wantTail {
			t.Fatalf("%d records not indexed, want %d (-1: index not usable)", tail, wantTail)
		}
		check(t, r)
	}
	t.Run("reader", func(t *testing.T) { withReader(t, 0) })

	// A log written before indexes existed: readers scan, Open builds them.
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketIndex); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(metaIndexed)
	})
	t.Run("legacy-reader", func(t *testing.T) { withReader(t, -1) })
	reopen := func() {
		t.Helper()
		s, err := Open(path, Options{SigningKeyFile: filepath.Join(filepath.Dir(path), "signing.key"), Logger: quietLogger(), NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	reopen()
	t.Run("migrated", func(t *testing.T) { withReader(t, 0) })

	// Appended to by a sessctl without indexes (or stopped before it
	// wrote the held-back keys): readers scan the records after
	// meta/indexed, Open indexes them.
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		size := lastSeq(tx) + 1
		// Drop the entries of the last 40 records, as if never written.
		c := tx.Bucket(bucketIndex).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if u64(k[len(k)-8:]) >= size-40 {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bucketMeta).Put(metaIndexed, u64key(size-40))
	})
	t.Run("lagging-reader", func(t *testing.T) { withReader(t, 40) })
	reopen()
	t.Run("caught-up", func(t *testing.T) { withReader(t, 0) })

	// An index that claims more records than the log has is not used, and
	// rebuilt.
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaIndexed, u64key(lastSeq(tx)+5))
	})
	t.Run("ahead-reader", func(t *testing.T) { withReader(t, -1) })
	reopen()
	t.Run("rebuilt", func(t *testing.T) { withReader(t, 0) })
	if rep := mustVerify(t, path, VerifyOptions{}); !rep.OK() {
		t.Fatalf("verify: %v", rep.Problems)
	}
}

func TestIndexTerms(t *testing.T) {
	r := &Record{Kind: KindExchange, Outcome: OutcomeForwarded, Host: "h",
		Identity: Identity{Runner: "ci", Claims: map[string]string{"project_path": "g/p", "pipeline_id": "7", "sha": "s", "user_login": "dev"}},
		Rules:    []RuleHit{{Name: "a"}, {Name: "b"}, {Name: "a"}}}
	got := fmt.Sprint(recordTerms(r))
	// Most records are forwarded exchanges: those values are not indexed.
	want := "[{runner ci} {repo g/p} {run 7} {sha s} {actor dev} {host h} {rule a} {rule b}]"
	if got != want {
		t.Errorf("terms %s, want %s", got, want)
	}
	r.Kind, r.Outcome = KindApproval, OutcomeApprovalDenied
	if got := fmt.Sprint(recordTerms(r)); !strings.Contains(got, "{outcome approval_denied} {host h} {kind approval}") {
		t.Errorf("terms %s", got)
	}
	if k := indexKey(fieldRepo, "a/b", 1, 2); !bytes.Equal(k, []byte("repo\x00a/b\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02")) {
		t.Errorf("key %q", k)
	}
	if p := indexPrefix(fieldActor, longUser); len(p) != len("actor")+2+33 || p[len("actor")+1] != 0xff {
		t.Errorf("long value prefix %q", p)
	}
}

func TestSession(t *testing.T) {
	s, _ := buildIndexedLog(t, 30)
	defer s.Close()
	recs, err := s.Session(exchange(11).SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Seq != 12 || recs[1].Seq != 13 || recs[1].Kind != KindApproval {
		t.Fatalf("session: %d records", len(recs))
	}
	for _, id := range []string{"no-such-session", ""} {
		if _, err := s.Session(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Session(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestLeaves(t *testing.T) {
	// More than one read transaction's worth.
	const n = leavesChunk + 100
	s, path := openTest(t, Options{NoSync: true})
	recs := make([]*Record, n)
	for i := range recs {
		recs[i] = exchange(i)
		if i%3 == 0 {
			recs[i].ResponseBody = nil
		}
	}
	if err := appendBulk(s, recs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(context.Background(), exchange(5).Start); err != nil {
		t.Fatal(err)
	}
	var stored [][]byte
	s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketLeaves).ForEach(func(_, v []byte) error { stored = append(stored, bytes.Clone(v)); return nil })
	})
	for _, from := range []uint64{0, 1, 7, n - 1, n + 1, n + 2, 1 << 40} {
		next := from
		err := s.Leaves(from, func(seq uint64, leaf, req, resp []byte) error {
			if seq != next || !bytes.Equal(leaf, stored[seq]) {
				t.Fatalf("from %d: got record %d (%d bytes), want %d", from, seq, len(leaf), next)
			}
			if seq >= 1 && seq <= n {
				i := int(seq - 1)
				wantReq, wantResp := recs[i].RequestBody, recs[i].ResponseBody
				if i < 5 { // pruned
					wantReq, wantResp = nil, nil
				}
				if !bytes.Equal(req, wantReq) || !bytes.Equal(resp, wantResp) || (wantResp == nil) != (resp == nil) {
					t.Fatalf("record %d bodies %q %q", seq, req, resp)
				}
			}
			next++
			return nil
		})
		if err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		if want := max(from, uint64(len(stored))); next != want {
			t.Fatalf("from %d: stopped before %d, want %d", from, next, want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.Leaves(0, func(uint64, []byte, []byte, []byte) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("fn error: %v after %d calls", err, calls)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Damage is an error, before the leaf that does not chain.
	for _, tc := range []struct {
		name   string
		damage func(tx *bbolt.Tx) error
		from   uint64
		upTo   uint64 // records passed to fn before the error
		errHas string
	}{
		{"modified", func(tx *bbolt.Tx) error {
			return putLeaf(tx, 600, bytes.Replace(leafAt(tx, 600), []byte("gpt-4o-mini"), []byte("gpt-4o-maxi"), 1))
		}, 0, 601, "record 601 does not name the hash of record 600"},
		{"modified-before-from", func(tx *bbolt.Tx) error {
			return putLeaf(tx, 600, bytes.Replace(leafAt(tx, 600), []byte("gpt-4o-mini"), []byte("gpt-4o-maxi"), 1))
		}, 601, 0, "record 601 does not name"},
		{"missing", func(tx *bbolt.Tx) error { return tx.Bucket(bucketLeaves).Delete(u64key(1030)) }, 2, 1028, "record 1030 is missing"},
		{"missing-before-from", func(tx *bbolt.Tx) error { return tx.Bucket(bucketLeaves).Delete(u64key(9)) }, 10, 0, "record 9 is missing"},
		{"renumbered", func(tx *bbolt.Tx) error {
			return putLeaf(tx, 20, bytes.Replace(leafAt(tx, 20), []byte(`{"seq":20,`), []byte(`{"seq":21,`), 1))
		}, 0, 20, "record 21 is stored as record 20"},
		{"garbage", func(tx *bbolt.Tx) error { return putLeaf(tx, 3, []byte("junk")) }, 0, 3, "record 3 does not decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "copy.db")
			copyFile(t, path, p)
			rawUpdate(t, p, tc.damage)
			r, err := OpenReader(p)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := uint64(0)
			err = r.Leaves(tc.from, func(uint64, []byte, []byte, []byte) error { got++; return nil })
			if err == nil || !strings.Contains(err.Error(), tc.errHas) || !strings.Contains(err.Error(), "altered") {
				t.Fatalf("error %v, want %q", err, tc.errHas)
			}
			if got != tc.upTo {
				t.Errorf("%d records before the error, want %d", got, tc.upTo)
			}
		})
	}
}

// TestLeavesHashRebuildsTree checks the contract Export relies on: the
// hashes of the leaves Leaves hands out are the log's tree.
func TestLeavesHashRebuildsTree(t *testing.T) {
	s, _ := buildIndexedLog(t, 50)
	defer s.Close()
	var stored memHashes
	n := int64(0)
	if err := s.Leaves(0, func(seq uint64, leaf, _, _ []byte) error {
		hs, err := tlog.StoredHashesForRecordHash(n, tlog.RecordHash(leaf), stored)
		stored = append(stored, hs...)
		n++
		return err
	}); err != nil {
		t.Fatal(err)
	}
	root, err := tlog.TreeHash(n, stored)
	if err != nil {
		t.Fatal(err)
	}
	var want tlog.Hash
	s.db.View(func(tx *bbolt.Tx) error {
		want, err = tlog.TreeHash(n, bucketHashReader{tx.Bucket(bucketTree)})
		return err
	})
	if root != want {
		t.Fatalf("root %s, stored tree %s", root, want)
	}
	if h := hex.EncodeToString(root[:]); len(h) != 64 {
		t.Fatal(h)
	}
}

type memHashes []tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m[x]
	}
	return out, nil
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
