package central

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessctl/sessctl/internal/pgtest"
	"github.com/sessctl/sessctl/store"
)

// benchFleetRows is the number of shipped records BenchmarkFleetQuery
// loads (SESSCTL_BENCH_FLEET_ROWS overrides it).
const benchFleetRows = 10_000_000

// synthetic describes the generated fleet: three replicas, 200
// repositories, a run every 40 records, 30 runners; 2 % of the records
// blocked by a rule, the rest forwarded.
type synthetic struct {
	origins []string
	start   time.Time
	step    time.Duration
}

func (s synthetic) record(i int, rng *rand.Rand) (originIdx int, rec *store.Record) {
	originIdx = i % len(s.origins)
	seq := uint64(i / len(s.origins))
	t := s.start.Add(time.Duration(i) * s.step)
	rec = &store.Record{
		Seq: seq, Prev: "9b1d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d", Kind: store.KindExchange,
		SessionID: fmt.Sprintf("0190aaaa-bbbb-7ccc-8ddd-%012d", i),
		Start:     t, End: t.Add(800 * time.Millisecond),
		Identity: store.Identity{Method: "oidc", Issuer: "https://token.actions.githubusercontent.com",
			Subject: "repo:acme/r" + strconv.Itoa(i%200) + ":ref:refs/heads/main",
			Claims: map[string]string{
				"repository": "acme/r" + strconv.Itoa(i%200),
				"run_id":     strconv.Itoa(i / 40),
				"actor":      "dev" + strconv.Itoa(i%57),
				"sha":        fmt.Sprintf("%040x", uint64(i/40)*0x9e3779b97f4a7c15),
			}},
		Conn: store.Conn{ID: strconv.Itoa(i), Mode: "explicit", Client: "10.0.0.1:4242"},
		Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o-mini",
		Status: 200, Outcome: store.OutcomeForwarded, Recording: "full",
	}
	if i%7 == 0 {
		rec.Identity = store.Identity{Method: "runner_token", Runner: "runner-" + strconv.Itoa(i%30)}
	}
	if rng.IntN(50) == 0 {
		rec.Status, rec.Outcome = 403, store.OutcomeBlocked
		rec.Rules = []store.RuleHit{{Name: "openai-key", Action: "block", Scope: "request", Count: 1}}
	}
	return originIdx, rec
}

// loadSynthetic fills the shipped-log tables with n records through COPY,
// building the indexes of the schema afterwards (faster than maintaining
// them row by row), and returns the generator.
func loadSynthetic(b *testing.B, pool *pgxpool.Pool, n int) synthetic {
	ctx := context.Background()
	s := synthetic{origins: []string{"replica-a/0190a", "replica-b/0190b", "replica-c/0190c"}, step: 50 * time.Millisecond}
	s.start = time.Now().Add(-time.Duration(n) * s.step)
	ids := make([]int32, len(s.origins))
	for i, o := range s.origins {
		if err := pool.QueryRow(ctx, "INSERT INTO sessctl_origins (origin, public_key) VALUES ($1, $2) RETURNING id", o, o+"+00000000+AAAA").Scan(&ids[i]); err != nil {
			b.Fatal(err)
		}
	}
	rows, err := pool.Query(ctx, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sessctl_leaves' AND indexname <> 'sessctl_leaves_pkey'")
	if err != nil {
		b.Fatal(err)
	}
	var defs [][2]string
	var name, def string
	if _, err := pgx.ForEachRow(rows, []any{&name, &def}, func() error { defs = append(defs, [2]string{name, def}); return nil }); err != nil {
		b.Fatal(err)
	}
	for _, d := range defs {
		if _, err := pool.Exec(ctx, "DROP INDEX "+d[0]); err != nil {
			b.Fatal(err)
		}
	}
	cols := []string{"origin_id", "seq", "leaf", "leaf_hash", "start_time", "end_time", "kind", "session_id",
		"repository", "workflow", "run", "sha", "actor", "runner", "outcome", "host", "model", "status", "rules"}
	rng := rand.New(rand.NewPCG(1, 2))
	i := 0
	hash := make([]byte, 32)
	t0 := time.Now()
	_, err = pool.CopyFrom(ctx, pgx.Identifier{"sessctl_leaves"}, cols, pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		oi, rec := s.record(i, rng)
		i++
		leaf, err := store.EncodeLeaf(rec)
		if err != nil {
			return nil, err
		}
		c := ColumnsOf(rec)
		return []any{ids[oi], int64(rec.Seq), leaf, hash, rec.Start, rec.End, string(rec.Kind), c.SessionID,
			c.Repository, c.Workflow, c.Run, c.SHA, c.Actor, c.Runner, c.Outcome, c.Host, c.Model, c.Status, c.Rules}, nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("COPY of %d records: %v", n, time.Since(t0).Round(time.Second))
	t0 = time.Now()
	for _, d := range defs {
		if _, err := pool.Exec(ctx, d[1]); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, "ANALYZE sessctl_leaves"); err != nil {
		b.Fatal(err)
	}
	b.Logf("indexes and ANALYZE: %v", time.Since(t0).Round(time.Second))
	return s
}

// BenchmarkFleetQuery answers filtered listings (a page of 100, newest
// first, as `sessctl sessions ls --central` and the API ask) over a fleet
// of 10 million shipped records, reporting p50 and p99 latency.
func BenchmarkFleetQuery(b *testing.B) {
	n := benchFleetRows
	if v := os.Getenv("SESSCTL_BENCH_FLEET_ROWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			b.Fatalf("SESSCTL_BENCH_FLEET_ROWS=%q: want a number >= 1000", v)
		}
	}
	pg := pgtest.Start(b)
	pool, err := pgxpool.New(context.Background(), pg.DSN)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := Migrate(context.Background(), pool); err != nil {
		b.Fatal(err)
	}
	s := loadSynthetic(b, pool, n)
	fleet := NewFleet(pool)
	mid := n / 2
	_, midRec := s.record(mid, rand.New(rand.NewPCG(9, 9)))
	for _, q := range []struct {
		name string
		f    store.Filter
	}{
		{"newest", store.Filter{}},
		{"repo", store.Filter{Repo: "acme/r17"}},
		{"repo+7d", store.Filter{Repo: "acme/r17", Since: time.Now().Add(-7 * 24 * time.Hour)}},
		{"run", store.Filter{Run: midRec.Identity.Claims["run_id"]}},
		{"sha-abbrev", store.Filter{SHA: midRec.Identity.Claims["sha"][:10]}},
		{"runner", store.Filter{Runner: "runner-7"}},
		{"outcome=blocked", store.Filter{Outcome: store.OutcomeBlocked}},
		{"rule", store.Filter{Rule: "openai-key"}},
		{"repo+blocked", store.Filter{Repo: "acme/r17", Outcome: store.OutcomeBlocked}},
		{"session", store.Filter{Session: midRec.SessionID}},
		{"origin+runner", store.Filter{Runner: "runner-4"}},
	} {
		src := fleet
		if q.name == "origin+runner" {
			src = fleet.Only(s.origins[1])
		}
		b.Run(q.name, func(b *testing.B) {
			f := q.f
			f.Limit = 100
			lat := make([]time.Duration, 0, b.N)
			got := 0
			for b.Loop() {
				t := time.Now()
				got = 0
				if err := src.List(f, func(*store.Record) error { got++; return nil }); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
			}
			if got == 0 {
				b.Fatalf("%s matched nothing", q.name)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(got), "records")
		})
	}
}
