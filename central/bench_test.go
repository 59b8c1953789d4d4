package central

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkShip measures shipping throughput: b.N records (with a request
// and a response body each) already in a local log, shipped from the
// start into a fresh database with the default batch size. The figure to
// compare is records/s against the append rate of a replica
// (BENCHMARKS.md).
func BenchmarkShip(b *testing.B) {
	_, db := openDB(b)
	st := openLog(b, 1000)
	appendN(b, st, 0, b.N)
	if err := db.Ready(context.Background()); err != nil {
		b.Fatal(err)
	}
	n, err := st.Size()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sh := NewShipper(db, st, ShipperOptions{Logger: quiet(), Poll: time.Millisecond})
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	wg.Add(1)
	go func() { defer wg.Done(); sh.Run(ctx) }()
	for sh.Shipped() < n {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	wg.Wait()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
}
