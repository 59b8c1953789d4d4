package store

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// bigLog is a large log built once per test binary run, on first use by a
// benchmark, and removed by TestMain.
var bigLog struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Shape of the big log: records arrive every 100 ms from 64 concurrent CI
// runs of 20 requests each, spread over 1000 repositories and 50 actors;
// 2% fire a rule and 1% are blocked.
const (
	bigRecords    = 1_000_000
	bigConcurrent = 64
	bigPerRun     = 20
	bigRepos      = 1000
)

var bigStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// bigRun returns the run record i belongs to.
func bigRun(i int) int {
	return i/(bigConcurrent*bigPerRun)*bigConcurrent + i%bigConcurrent
}

func bigRepo(run int) string { return fmt.Sprintf("acme/r%d", run*7919%bigRepos) }

func bigSHA(run int) string {
	h := sha1.Sum([]byte(strconv.Itoa(run)))
	return hex.EncodeToString(h[:])
}

func bigRecord(i int) *Record {
	run := bigRun(i)
	start := bigStart.Add(time.Duration(i) * 100 * time.Millisecond)
	r := &Record{
		Kind:      KindExchange,
		SessionID: fmt.Sprintf("0190c3a0-0000-7000-8000-%012d", i),
		Start:     start,
		End:       start.Add(800 * time.Millisecond),
		Identity: Identity{Method: "oidc", Issuer: "https://token.actions.githubusercontent.com",
			Subject: "repo:" + bigRepo(run) + ":ref:refs/heads/main", TokenHash: fmt.Sprintf("%064x", run), Policy: "ci",
			Claims: map[string]string{
				"repository": bigRepo(run), "run_id": strconv.Itoa(1_000_000 + run), "sha": bigSHA(run),
				"actor": fmt.Sprintf("dev%d", run%50), "workflow": "ci.yml", "ref": "refs/heads/main",
			}},
		Conn:      Conn{ID: strconv.Itoa(i / 4), Mode: "explicit", Client: "10.0.0.7:41234"},
		Host:      "api.openai.com",
		Method:    "POST",
		Path:      "/v1/chat/completions",
		Model:     "gpt-4o-mini",
		Status:    200,
		Outcome:   OutcomeForwarded,
		Recording: RecordingMetadata,
		Deltas:    []Delta{{OffsetMS: 210, Size: 40}, {OffsetMS: 260, Size: 38}, {OffsetMS: 330, Size: 52}},
	}
	if i%50 == 7 {
		r.Rules = []RuleHit{{Name: "openai-key", Action: "mask", Scope: "request", Count: 1}}
	}
	if i%100 == 3 {
		r.Outcome, r.Status = OutcomeBlocked, 403
		r.Rules = append(r.Rules, RuleHit{Name: "aws-key", Action: "block", Scope: "request", Count: 1})
	}
	return r
}

// openBigLog returns a Reader on the big log, building it on first use
// (appendBulk, 10,000 records a transaction, no fsync).
func openBigLog(b *testing.B) *Reader {
	b.Helper()
	bigLog.once.Do(func() {
		dir, err := os.MkdirTemp("", "sessctl-bench-")
		if err != nil {
			bigLog.err = err
			return
		}
		bigLog.dir, bigLog.path = dir, filepath.Join(dir, "big.db")
		start := time.Now()
		s, err := Open(bigLog.path, Options{SigningKeyFile: filepath.Join(dir, "k"), NoSync: true, Logger: quietLogger(), CheckpointEvery: 100_000})
		if err != nil {
			bigLog.err = err
			return
		}
		const batch = 10_000
		recs := make([]*Record, batch)
		for i := 0; i < bigRecords && bigLog.err == nil; i += batch {
			for j := range recs {
				recs[j] = bigRecord(i + j)
			}
			bigLog.err = appendBulk(s, recs)
		}
		if err := s.Close(); bigLog.err == nil {
			bigLog.err = err
		}
		if fi, err := os.Stat(bigLog.path); err == nil {
			b.Logf("built a log of %d records (%d MiB) in %s", bigRecords, fi.Size()>>20, time.Since(start).Round(time.Second))
		}
	})
	if bigLog.err != nil {
		b.Fatal(bigLog.err)
	}
	r, err := OpenReader(bigLog.path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// BenchmarkListFiltered1M lists from a log of 1,000,000 records (built
// once per run, which takes a while). The headline is repo+run: the 20
// records of one CI run, found through the repo and run indexes. The
// others show the index on a common value with a limit, a rare rule, an
// abbreviated commit, a time window, a query that also scans the records
// not indexed yet (as on a live log), and (with SESSCTL_BENCH_SCAN=1) the
// walk over every record that a filter cost before the indexes.
func BenchmarkListFiltered1M(b *testing.B) {
	r := openBigLog(b)
	run := bigRun(bigRecords / 2)
	ruled := bigRun(bigRecords/2/50*50 + 7) // a run with a record that fired openai-key
	at := func(i int) time.Time { return bigStart.Add(time.Duration(i) * 100 * time.Millisecond) }
	for _, bc := range []struct {
		name string
		f    Filter
		want int // records the query returns
	}{
		{"repo+run", Filter{Repo: bigRepo(run), Run: strconv.Itoa(1_000_000 + run)}, bigPerRun},
		{"repo+run+since-24h", Filter{Repo: bigRepo(run), Run: strconv.Itoa(1_000_000 + run), Since: at(bigRecords/2 - 864_000)}, bigPerRun},
		{"run-only", Filter{Run: strconv.Itoa(1_000_000 + run)}, bigPerRun},
		{"repo-limit-100", Filter{Repo: bigRepo(run), Limit: 100}, 100},
		{"repo-all", Filter{Repo: bigRepo(run)}, -1},
		{"sha-abbrev+actor", Filter{SHA: bigSHA(run)[:8], Actor: fmt.Sprintf("dev%d", run%50)}, bigPerRun},
		{"rule-blocked-limit-100", Filter{Rule: "aws-key", Outcome: OutcomeBlocked, Limit: 100}, 100},
		{"rule+repo", Filter{Rule: "openai-key", Repo: bigRepo(ruled)}, -1},
		{"kind+host-limit-100", Filter{Kind: KindExchange, Host: "api.openai.com", Limit: 100}, 100},
		{"newest-100", Filter{Limit: 100}, 100},
		{"time-window-5m", Filter{Since: at(bigRecords / 2), Until: at(bigRecords/2 + 3000)}, 3000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				n = 0
				if err := r.List(bc.f, func(*Record) error { n++; return nil }); err != nil {
					b.Fatal(err)
				}
			}
			if n == 0 || (bc.want > 0 && n != bc.want) {
				b.Fatalf("%d records, want %d", n, bc.want)
			}
			b.ReportMetric(float64(n), "records")
		})
	}
	b.Run("repo+run-scan", func(b *testing.B) {
		if os.Getenv("SESSCTL_BENCH_SCAN") == "" {
			b.Skip("set SESSCTL_BENCH_SCAN=1 to time the walk over every record")
		}
		f := Filter{Repo: bigRepo(run), Run: strconv.Itoa(1_000_000 + run)}
		for b.Loop() {
			n := 0
			if err := r.List(Filter{}, func(rec *Record) error {
				if f.Match(rec) {
					n++
				}
				return nil
			}); err != nil || n != bigPerRun {
				b.Fatal(err, n)
			}
		}
	})
	// A live log holds back the index keys of up to 1023 records, which a
	// query scans. A reader of a log written before indexes walks the
	// time index, skipping the leaves that lack the filter's values.
	r.Close() // last: the others use r
	setIndexed := func(fn func(indexed uint64) uint64) {
		db, err := bbolt.Open(bigLog.path, 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bbolt.Tx) error {
			m := tx.Bucket(bucketMeta)
			return m.Put(metaIndexed, u64key(fn(binary.BigEndian.Uint64(m.Get(metaIndexed)))))
		}); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		lag  uint64
	}{{"repo+run-1023-unindexed", 1023}, {"repo+run-no-index", bigRecords + 2}} {
		b.Run(bc.name, func(b *testing.B) {
			var was uint64
			setIndexed(func(n uint64) uint64 { was = n; return n - bc.lag })
			defer setIndexed(func(uint64) uint64 { return was })
			lr, err := OpenReader(bigLog.path)
			if err != nil {
				b.Fatal(err)
			}
			defer lr.Close()
			f := Filter{Repo: bigRepo(run), Run: strconv.Itoa(1_000_000 + run)}
			for b.Loop() {
				n := 0
				if err := lr.List(f, func(*Record) error { n++; return nil }); err != nil || n != bigPerRun {
					b.Fatal(err, n)
				}
			}
		})
	}
}
