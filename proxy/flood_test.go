package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/diskspace"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// floodLimits are tight refusal limits so that a flood of a second shows
// every regime: burst, rate, summaries.
var floodLimits = RefusalLimits{PerMinute: 600, Burst: 5, Interval: 250 * time.Millisecond}

// maxRefusalLeaf bounds the stored bytes of one refusal record.
const maxRefusalLeaf = 1400

// refusalStats reads the log: individual refusal records, summary
// records, the refusals they stand for, and the largest refusal leaf.
type refusalStats struct {
	individual, summaries int
	counted               int64
	maxLeaf, leafBytes    int
}

func readRefusals(t *testing.T, e *env, from uint64) refusalStats {
	t.Helper()
	var st refusalStats
	recs := map[uint64]*store.Record{}
	for _, r := range e.records() {
		recs[r.Seq] = r
	}
	err := e.store.Leaves(from, func(seq uint64, leaf, _, _ []byte) error {
		r := recs[seq]
		if r == nil || r.Kind != store.KindRefused {
			return nil
		}
		st.maxLeaf = max(st.maxLeaf, len(leaf))
		st.leafBytes += len(leaf)
		if r.Extra["summary"] == "true" {
			n, err := strconv.ParseInt(r.Extra["count"], 10, 64)
			if err != nil || n < 1 || r.Conn.Client == "" || r.Extra["kind"] == "" || r.Start.After(r.End) {
				t.Errorf("summary record %+v", r)
			}
			st.summaries++
			st.counted += n
			return nil
		}
		if len(r.Meta) != 0 || len(r.Path) > maxRefusedPath || len(r.Host) > maxRefusedHost {
			t.Errorf("refusal record copies too much: meta %d, path %d, host %d", len(r.Meta), len(r.Path), len(r.Host))
		}
		st.individual++
		st.counted++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func randomHost(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	b[n/2] = '.'
	return string(b)
}

// TestRefusalFloodIsBounded floods the proxy for a second from one source
// with the refusals issue 20 measured (CONNECTs to long random hosts,
// unauthenticated requests with long paths and many long Sessctl-Meta
// names) and checks the bound README states: at most Burst + rate·t
// individual records and 9 summaries per interval from the source, each
// record bounded in size, and every refusal counted.
func TestRefusalFloodIsBounded(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) { o.Refusals = floodLimits })
	start := uint64(len(e.records()))
	var sent atomic.Int64
	begin := time.Now()
	deadline := begin.Add(time.Second)
	var wg sync.WaitGroup
	// CONNECTs to random 250-character hosts, a connection each.
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				host := randomHost(250)
				c, err := net.Dial("tcp", e.proxyURL.Host)
				if err != nil {
					t.Error(err)
					return
				}
				fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
				b, _ := io.ReadAll(c)
				c.Close()
				if !strings.HasPrefix(string(b), "HTTP/1.1 403") {
					t.Errorf("CONNECT answer %.40q", b)
					return
				}
				sent.Add(1)
			}
		}()
	}
	// Unauthenticated requests inside a tunnel, keep-alive.
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.newClient()
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest("POST", "https://api.openai.com/v1/"+strings.Repeat("p", 3000)+"?q="+strings.Repeat("x", 2000), strings.NewReader(chatBody))
				req.Header.Set("Authorization", "Bearer sct_wrong-"+strconv.Itoa(rand.Int()))
				for i := range 32 {
					req.Header.Set(fmt.Sprintf("Sessctl-Meta-%d-%s", i, strings.Repeat("n", 1500)), strings.Repeat("v", 300))
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("status %d", resp.StatusCode)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	total := sent.Load()
	if total < 100 {
		t.Fatalf("only %d refusals sent in %v: the flood did not flood", total, elapsed)
	}
	// Every refusal is in the log, one by one or in a summary, once the
	// summaries of the last interval are written.
	var st refusalStats
	testutil.WaitFor(t, 5*time.Second, "every refusal counted in the log", func() bool {
		st = readRefusals(t, e, start)
		return st.counted >= total
	})
	settled := time.Since(begin)
	if st.counted != total {
		t.Errorf("log counts %d refusals, %d were sent", st.counted, total)
	}
	maxIndividual := floodLimits.Burst + int(settled.Minutes()*float64(floodLimits.PerMinute)) + 1
	intervals := int(settled/floodLimits.Interval) + 2
	maxSummaries := (maxSummaryTargets + 1) * intervals
	t.Logf("%d refusals in %v: %d individual records (bound %d), %d summaries (bound %d); largest leaf %d B, %.1f leaf bytes per refusal",
		total, elapsed.Round(time.Millisecond), st.individual, maxIndividual, st.summaries, maxSummaries, st.maxLeaf, float64(st.leafBytes)/float64(total))
	if st.individual > maxIndividual {
		t.Errorf("%d individual refusal records, bound %d", st.individual, maxIndividual)
	}
	if st.summaries > maxSummaries {
		t.Errorf("%d summary records, bound %d", st.summaries, maxSummaries)
	}
	if st.maxLeaf > maxRefusalLeaf {
		t.Errorf("a refusal record of %d bytes, bound %d", st.maxLeaf, maxRefusalLeaf)
	}
	// Records per second from the source: the stated bound.
	perSec := float64(st.individual+st.summaries) / settled.Seconds()
	bound := float64(floodLimits.Burst)/settled.Seconds() + float64(floodLimits.PerMinute)/60 + float64(maxSummaryTargets+1)/floodLimits.Interval.Seconds()
	if perSec > bound {
		t.Errorf("%.1f records/s from one source, bound %.1f", perSec, bound)
	}
	// An authenticated runner is still recorded in full, metadata and all.
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", strings.NewReader(chatBody))
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	req.Header.Set("Sessctl-Meta-Ticket", "OPS-7")
	if resp, body := do(t, e.client, req); resp.StatusCode != 200 {
		t.Fatalf("runner after the flood: %d %s", resp.StatusCode, body)
	}
	recs := e.records()
	last := recs[len(recs)-1]
	if last.Kind != store.KindExchange || last.Meta["ticket"] != "OPS-7" {
		t.Fatalf("runner's record %+v", last)
	}
}

// TestMetaOnlyAfterAuthentication: an unauthenticated request's
// Sessctl-Meta-* headers are not read; an authenticated one's are bounded
// in name length and count.
func TestMetaOnlyAfterAuthentication(t *testing.T) {
	e := newEnv(t, okJSON)
	send := func(token string) *store.Record {
		req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", strings.NewReader(chatBody))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Sessctl-Meta-Ticket", "OPS-1")
		req.Header.Set("Sessctl-Meta-"+strings.Repeat("n", maxMetaName+1), "long name")
		for i := range 40 {
			req.Header.Set(fmt.Sprintf("Sessctl-Meta-K%02d", i), "v")
		}
		do(t, e.client, req)
		recs := e.records()
		return recs[len(recs)-1]
	}
	if r := send("sct_wrong"); r.Outcome != store.OutcomeUnauthenticated || r.Meta != nil {
		t.Fatalf("unauthenticated record: outcome %s, meta %v", r.Outcome, r.Meta)
	}
	r := send(testRunnerToken)
	if r.Outcome != store.OutcomeForwarded || len(r.Meta) != maxMetaHeaders {
		t.Fatalf("authenticated record: outcome %s, %d meta", r.Outcome, len(r.Meta))
	}
	for k := range r.Meta {
		if len(k) > maxMetaName {
			t.Fatalf("meta name of %d bytes recorded", len(k))
		}
	}
}

// TestLowDiskOnlyCountsRefusals: below the disk reserve (a real statfs
// of the log's directory against a reserve larger than its free space),
// refusals of unauthenticated clients are only counted in summaries,
// while an authenticated exchange is recorded in full.
func TestLowDiskOnlyCountsRefusals(t *testing.T) {
	var watch *diskspace.Watch
	e := newEnv(t, okJSON, func(o *Options) {
		o.Refusals = floodLimits
		o.LowDisk = func() bool { return watch.Low() }
	})
	watch = diskspace.New(filepath.Dir(e.dbPath), 1<<62)
	if !watch.Low() {
		t.Skip("free space not measurable here")
	}
	start := uint64(len(e.records()))
	const n = 30
	for range n {
		if got := rawProxy(t, e, "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 403") {
			t.Fatalf("CONNECT answer %.40q", got)
		}
	}
	var st refusalStats
	testutil.WaitFor(t, 5*time.Second, "the refusals counted in a summary", func() bool {
		st = readRefusals(t, e, start)
		return st.counted >= n
	})
	if st.individual != 0 || st.summaries != 1 || st.counted != n {
		t.Fatalf("below the reserve: %d individual records, %d summaries counting %d, want 0, 1, %d", st.individual, st.summaries, st.counted, n)
	}
	if resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody); resp.StatusCode != 200 {
		t.Fatalf("runner below the reserve: %d %s", resp.StatusCode, body)
	}
	recs := e.records()
	if last := recs[len(recs)-1]; last.Kind != store.KindExchange || last.Outcome != store.OutcomeForwarded || last.Request == nil {
		t.Fatalf("runner's record %+v", last)
	}
}

// TestTransparentClientHelloFloodIsBounded: ClientHellos with random SNI
// names (refused by egress policy after the ClientHello is read) from one
// source are bounded in the log as other refusals are, and each client
// gets its unrecognized_name alert.
func TestTransparentClientHelloFloodIsBounded(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) { o.Refusals = floodLimits })
	addr := serveAsTPROXY(t, e, "127.0.0.1:0", TransparentOptions{DstCheck: DstCheckNone})
	start := uint64(len(e.records()))
	var sent atomic.Int64
	begin := time.Now()
	deadline := begin.Add(time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				raw.SetDeadline(time.Now().Add(5 * time.Second))
				err = tls.Client(raw, &tls.Config{ServerName: randomHost(60), InsecureSkipVerify: true}).Handshake()
				raw.Close()
				if got := remoteAlert(err); got != "tls: unrecognized name" {
					t.Errorf("handshake: %v", err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	total := sent.Load()
	if total < 50 {
		t.Fatalf("only %d ClientHellos sent", total)
	}
	var st refusalStats
	testutil.WaitFor(t, 5*time.Second, "every refusal counted in the log", func() bool {
		st = readRefusals(t, e, start)
		return st.counted >= total
	})
	settled := time.Since(begin)
	maxIndividual := floodLimits.Burst + int(settled.Minutes()*float64(floodLimits.PerMinute)) + 1
	maxSummaries := (maxSummaryTargets + 1) * (int(settled/floodLimits.Interval) + 2)
	t.Logf("%d ClientHellos: %d individual records (bound %d), %d summaries (bound %d), largest leaf %d B", total, st.individual, maxIndividual, st.summaries, maxSummaries, st.maxLeaf)
	if st.counted != total || st.individual > maxIndividual || st.summaries > maxSummaries || st.maxLeaf > maxRefusalLeaf {
		t.Fatalf("counted %d of %d; %d individual (bound %d), %d summaries (bound %d), largest leaf %d (bound %d)",
			st.counted, total, st.individual, maxIndividual, st.summaries, maxSummaries, st.maxLeaf, maxRefusalLeaf)
	}
}
