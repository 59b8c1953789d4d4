package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkAppend appends with fsync (group commit) from 1, 16, 64 and
// 256 goroutines. records/s is the figure to compare with the target of
// 10,000 records/s at 64.
func BenchmarkAppend(b *testing.B) {
	for _, conc := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			s, _ := openTest(b, Options{CheckpointEvery: 1000, NoSync: os.Getenv("SESSCTL_BENCH_NOSYNC") != ""})
			defer s.Close()
			recs := make([]*Record, conc)
			for i := range recs {
				recs[i] = exchange(i)
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for g := range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						// As the proxy would: a fresh uuid v7 and the
						// current time, so the indexes grow at their end.
						r := *recs[g]
						r.SessionID = uuid.Must(uuid.NewV7()).String()
						r.Start = time.Now()
						r.End = r.Start
						if _, err := s.Append(context.Background(), &r); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			b.ReportMetric(float64(bytesWritten(s))/float64(b.N), "B-written/record")
		})
	}
}

// bytesWritten returns the bytes of pages s has written so far.
func bytesWritten(s *Store) int64 {
	st := s.db.Stats()
	return st.TxStats.GetPageAlloc()
}

// claimsRecord is an exchange of one of 64 concurrent CI runs (20 requests
// each) of 1000 repositories, as an OIDC-authenticated proxy records them:
// each run has its own run id, commit and repository, which the indexes
// list apart.
func claimsRecord(i int) *Record {
	run := i/(64*20)*64 + i%64
	repo := fmt.Sprintf("acme/r%d", run*7919%1000)
	return &Record{
		Kind: KindExchange,
		Identity: Identity{Method: "oidc", Issuer: "https://token.actions.githubusercontent.com",
			Subject: "repo:" + repo + ":ref:refs/heads/main", Policy: "ci",
			Claims: map[string]string{
				"repository": repo, "run_id": fmt.Sprint(1_000_000 + run), "sha": fmt.Sprintf("%040x", uint64(run)*0x9E3779B97F4A7C15),
				"actor": fmt.Sprintf("dev%d", run%50), "workflow": "ci.yml", "ref": "refs/heads/main",
			}},
		Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o-mini",
		Status: 200, Outcome: OutcomeForwarded, Recording: RecordingMetadata,
	}
}

// BenchmarkAppendClaims is BenchmarkAppend with records that carry CI
// claims (claimsRecord), the case where index maintenance costs most.
// B-written/record (bytes of pages bbolt wrote) does not depend on the
// machine's load as records/s does.
func BenchmarkAppendClaims(b *testing.B) {
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			s, _ := openTest(b, Options{CheckpointEvery: 1000, NoSync: os.Getenv("SESSCTL_BENCH_NOSYNC") != ""})
			defer s.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						r := claimsRecord(int(i))
						r.SessionID = uuid.Must(uuid.NewV7()).String()
						r.Start = time.Now()
						r.End = r.Start
						if _, err := s.Append(context.Background(), r); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			b.ReportMetric(float64(bytesWritten(s))/float64(b.N), "B-written/record")
		})
	}
}

// BenchmarkVerify verifies a closed log of 20,000 exchanges, with their
// bodies and with metadata recording only.
func BenchmarkVerify(b *testing.B) {
	for _, mode := range []Recording{RecordingFull, RecordingMetadata} {
		b.Run("recording="+string(mode), func(b *testing.B) {
			const n = 20000
			dir := b.TempDir()
			path := filepath.Join(dir, "bench.db")
			s, err := Open(path, Options{SigningKeyFile: filepath.Join(dir, "k"), NoSync: true, Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			body := make([]byte, 4096)
			for i := range body {
				body[i] = 'a' + byte(i%26)
			}
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < n; i += 8 {
						r := exchange(i)
						r.Recording = Recording(mode)
						r.RequestBody, r.ResponseBody = body[:1024], body
						if _, err := s.Append(context.Background(), r); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			r, err := OpenReader(path)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			b.ResetTimer()
			var rep *Report
			for b.Loop() {
				rep, err = r.Verify(VerifyOptions{})
				if err != nil || !rep.OK() {
					b.Fatal(err, rep)
				}
			}
			b.SetBytes(rep.BodyBytes)
			b.ReportMetric(float64(rep.Records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkExchangeCommit is one exchange's store work at concurrency 1,
// with fsync, as the proxy does it: note the exchange in flight, wait
// for a simulated upstream of 300 µs, append the record. "blocking" waits
// for the note before forwarding (two commits on the path); "queued"
// commits the note while the upstream works (BeginQueued). ns/op is the
// time the store adds to an exchange plus the 300 µs.
func BenchmarkExchangeCommit(b *testing.B) {
	const upstream = 300 * time.Microsecond
	// blocking: the note is durable before forwarding; queued: the note
	// rides the next commit and is waited for before the answer (a
	// streamed answer); record-only: the note is not waited for (a whole
	// answer, sent after its record is durable).
	for _, mode := range []string{"blocking", "queued", "record-only"} {
		b.Run(mode, func(b *testing.B) {
			s, _ := openTest(b, Options{CheckpointEvery: 1000, NoSync: os.Getenv("SESSCTL_BENCH_NOSYNC") != ""})
			defer s.Close()
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				r := exchange(i)
				r.SessionID = uuid.Must(uuid.NewV7()).String()
				var wait func(context.Context) error
				if mode == "blocking" {
					if err := s.Begin(ctx, r); err != nil {
						b.Fatal(err)
					}
				} else {
					var err error
					if wait, err = s.BeginQueued(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
				time.Sleep(upstream)
				if wait != nil && mode == "queued" {
					if err := wait(ctx); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := s.Append(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
