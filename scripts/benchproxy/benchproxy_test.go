package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/rules"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var d []time.Duration
		for _, n := range ns {
			d = append(d, time.Duration(n)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of four is the last", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100", ms(1, 2, 3), 100, 3 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := percentile(c.sorted, c.p); got != c.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", c.sorted, c.p, got, c.want)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	b, err := os.ReadFile("testdata/stat.txt")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"command with spaces and parentheses", string(b), 3250 * time.Millisecond, false},
		{"no command", "4242 S 1 2 3", 0, true},
		{"too short", "1 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 lots 75 0", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(c.in))
			if (err != nil) != c.wantErr || got != c.want {
				t.Errorf("parseStatCPU = %v, %v; want %v, error %v", got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	b, err := os.ReadFile("testdata/status.txt")
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseStatus(bufio.NewScanner(bytes.NewReader(b)))
	want := memInfo{HWM: 50 << 20, RSS: 40 << 20, Anon: 30 << 20, File: 9 << 20, Shmem: 1 << 20}
	if err != nil || m != want {
		t.Errorf("parseStatus = %+v, %v; want %+v", m, err, want)
	}
	for _, bad := range []string{"", "VmHWM:\t12 MB\nVmRSS:\t1 kB\n", "VmRSS:\t1 kB\n", "VmHWM:\t-3 kB\nVmRSS:\t1 kB\n",
		"VmHWM:\t1 kB\nVmRSS:\t1 kB\nRssAnon:\t99999999999999999 kB\n"} {
		if _, err := parseStatus(bufio.NewScanner(strings.NewReader(bad))); err == nil {
			t.Errorf("parseStatus(%q): no error", bad)
		}
	}
}

// TestOwnProcess reads this test's own /proc entries, as the harness reads
// a proxy's.
func TestOwnProcess(t *testing.T) {
	pid := os.Getpid()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := cpuTime(pid); err != nil {
		t.Fatal(err)
	}
	mi, err := memStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if mi.HWM < mi.RSS || mi.RSS <= 0 || mi.Anon <= 0 || mi.Anon > mi.RSS {
		t.Errorf("implausible: %+v", mi)
	}
	m := startMeter(pid)
	s := startSampler(pid, time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	anon, file := s.finish()
	u := m.stop()
	if u.PeakBytes <= 0 || anon <= 0 || file < 0 {
		t.Errorf("meter peak %d, sampled anon %d file %d", u.PeakBytes, anon, file)
	}
}

// TestDirectPath runs both workloads against the real stand-in over TLS.
func TestDirectPath(t *testing.T) {
	up, err := startUpstream(t.TempDir(), "", 3, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	p := directPath(up)
	defer p.Stop()
	ctx := context.Background()

	s := p.do(ctx, chatBody(false), false, deltaTexts(3))
	if s.err != nil || s.total <= 0 || !s.gzip {
		t.Fatalf("chat (gzip expected): %+v", s)
	}
	s = p.do(ctx, chatBody(true), true, deltaTexts(3))
	if s.err != nil || s.ttfd <= 0 || s.firstWhole != s.ttfd || len(s.gaps) != 2 || s.events != 3 || s.split != 0 {
		t.Fatalf("stream: %+v", s)
	}
	if s.gaps[0] < 5*time.Millisecond/2 {
		t.Errorf("deltas were not spaced out by the stand-in: gap %v", s.gaps[0])
	}
	if s := p.do(ctx, chatBody(true), true, deltaTexts(4)); s.err == nil {
		t.Errorf("a short stream was not reported")
	}
	wrong := *p
	wrong.Credential = "sk-not-the-real-key"
	if s := wrong.do(ctx, chatBody(false), false, deltaTexts(3)); s.err == nil || !strings.Contains(s.err.Error(), "401") {
		t.Errorf("wrong key: %v", s.err)
	}

	samples, elapsed := runPhase(ctx, p, workload{Stream: false, Concurrency: 4}, 100*time.Millisecond, 3)
	if len(samples) < 4 || elapsed < 100*time.Millisecond {
		t.Fatalf("runPhase: %d samples in %v", len(samples), elapsed)
	}
	tl := warm(ctx, p, workload{Stream: true, Concurrency: 2}, 10*time.Millisecond, 3)
	tl.round(ctx, 50*time.Millisecond, 3, nil)
	r := tl.result()
	if r.Errors != 0 || r.Requests < 2 || r.TTFD == nil || r.Gap.N != 2*r.Requests || r.PeakRSSMiB != nil ||
		*r.EventsPerStream != 3 || *r.SplitDeltas != 0 {
		t.Errorf("result: %+v", r)
	}
}

// TestBigBodies sends the memory cases, scaled down, straight to the
// stand-in: each must pass whole.
func TestBigBodies(t *testing.T) {
	up, err := startUpstream(t.TempDir(), "", 3, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	p := directPath(up)
	defer p.Stop()
	const n = 1 << 20
	for _, c := range memoryCases(n) {
		t.Run(c.Name, func(t *testing.T) {
			status, received, err := p.big(context.Background(), c)
			if err != nil || status != http.StatusOK {
				t.Fatalf("status %d, err %v", status, err)
			}
			if c.Answer > 0 && received != c.Answer {
				t.Errorf("received %d bytes, want %d", received, c.Answer)
			}
			if got := describeBig(c, status, received, err); !strings.Contains(got, "passed") {
				t.Errorf("describeBig = %q", got)
			}
		})
	}
	var buf bytes.Buffer
	if k, err := buf.ReadFrom(bigJSONBody(5000)); err != nil || k != 5000 || !bytes.HasSuffix(buf.Bytes(), []byte(`"}]}`)) {
		t.Errorf("bigJSONBody: %d bytes, %v", k, err)
	}
}

// TestSplitDeltas checks the holdback probe against a ruleset that cannot
// hold anything back and one whose literal starts every delta's tail.
func TestSplitDeltas(t *testing.T) {
	want := deltaTexts(4)
	none, err := rules.Parse([]byte("rules:\n  - name: q\n    pattern: 'QQQQ[0-9]{8}'\n    action: mask\n"))
	if err != nil {
		t.Fatal(err)
	}
	if split, out := splitDeltas(none, want); len(split) != 0 || strings.Join(out, "") != strings.Join(want, "") {
		t.Errorf("nothing to hold back, yet split %v (events %q)", split, out)
	}
	var b bytes.Buffer
	holdbackReport(&b, 4)
	if !strings.Contains(b.String(), "built-in rules:") {
		t.Errorf("report: %s", b.String())
	}
}

func TestErrorBody(t *testing.T) {
	cases := map[string]string{
		`{"error":{"message":"request body larger than max_body (33554432 bytes)","type":"sessctl_too_large","param":null,"code":"request_too_large"}}`: "sessctl_too_large: request body larger than max_body (33554432 bytes)",
		"  Bad Gateway\n": "Bad Gateway",
		`{"error":{}}`:    `{"error":{}}`,
	}
	for in, want := range cases {
		if got := errorBody([]byte(in)).Error(); got != want {
			t.Errorf("errorBody(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTargets(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	res := func(path, wl string, rps, p50 float64, rss *float64, split float64) result {
		r := result{Path: path, Workload: wl, Requests: 100, RPS: rps, Latency: dist{P50: p50}, PeakRSSMiB: rss}
		if strings.HasPrefix(wl, "stream") {
			r.TTFD = &dist{P50: p50}
			r.FirstWhole = &dist{P50: p50}
			r.Gap = &dist{P99: 20 + p50}
			r.SplitDeltas = &split
		}
		return r
	}
	all := []string{"added latency at c=1", "added latency vs mitmproxy at c=1", "throughput vs direct at c=16",
		"throughput vs mitmproxy at c=16", "time to first delta at c=1", "deltas held back",
		"inter-delta gap, stream-c1", "inter-delta gap, stream-c16", "RSS at c=16, 1M-record log", "no guarantee weakened"}
	cases := []struct {
		name    string
		results []result
		records int
		met     map[string]bool // by target name; absent: n/a
	}{
		{
			name: "all met",
			results: []result{
				res("direct", "chat-c1", 5000, 0.2, nil, 0), res("mitmproxy", "chat-c1", 300, 3.2, f(60), 0), res("sessctl", "chat-c1", 3000, 1.0, f(20), 0),
				res("direct", "chat-c16", 4000, 3, nil, 0), res("sessctl", "chat-c16", 3500, 4, f(40), 0), res("mitmproxy", "chat-c16", 200, 60, f(70), 0),
				res("direct", "stream-c1", 2, 0.3, nil, 0), res("sessctl", "stream-c1", 2, 1.2, f(30), 0.05),
				res("direct", "stream-c16", 40, 1, nil, 0), res("sessctl", "stream-c16", 40, 2, f(50), 0),
			},
			records: 1_000_000,
			met: map[string]bool{
				"added latency at c=1": true, "added latency vs mitmproxy at c=1": true, "throughput vs direct at c=16": true,
				"throughput vs mitmproxy at c=16": true, "time to first delta at c=1": true, "deltas held back": true,
				"inter-delta gap, stream-c1": true, "inter-delta gap, stream-c16": true, "RSS at c=16, 1M-record log": true,
			},
		},
		{
			name: "missed, mitmproxy not measured, log too small to judge RSS",
			results: []result{
				res("direct", "chat-c1", 5000, 0.2, nil, 0), res("sessctl", "chat-c1", 1000, 1.5, f(20), 0),
				res("direct", "chat-c16", 4000, 3, nil, 0), res("sessctl", "chat-c16", 3000, 5, f(70), 0),
				res("direct", "stream-c16", 40, 1, nil, 0), res("sessctl", "stream-c16", 40, 7, f(50), 0.2),
			},
			records: 20_000,
			met: map[string]bool{
				"added latency at c=1": false, "throughput vs direct at c=16": false, "deltas held back": false,
				"inter-delta gap, stream-c16": false,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &report{Results: c.results, Prefill: &prefill{Records: c.records}}
			r.compare()
			var names []string
			for _, tg := range r.Targets {
				names = append(names, tg.Name)
				want, judged := c.met[tg.Name]
				switch {
				case !judged && tg.Met != nil:
					t.Errorf("%s: judged %v without its paths (%s)", tg.Name, *tg.Met, tg.Measured)
				case judged && (tg.Met == nil || *tg.Met != want):
					t.Errorf("%s: met %v, want %v (%s)", tg.Name, tg.Met, want, tg.Measured)
				}
			}
			if !slices.Equal(names, all) {
				t.Fatalf("targets %q, want %q", names, all)
			}
			var out, md bytes.Buffer
			r.print(&out)
			if !strings.Contains(out.String(), "chat-c16") {
				t.Errorf("table lacks the results:\n%s", out.String())
			}
			r.markdown(&md)
			if !strings.Contains(md.String(), "| chat-c16 | sessctl |") || !strings.Contains(md.String(), "| sessctl | 3") {
				t.Errorf("Markdown lacks the results or the summary:\n%s", md.String())
			}
		})
	}
}

func FuzzParseStatCPU(f *testing.F) {
	if b, err := os.ReadFile("testdata/stat.txt"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("1 (a) S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseStatCPU(b)
		if err == nil && d < 0 {
			t.Errorf("negative CPU time %v", d)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	if b, err := os.ReadFile("testdata/status.txt"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("VmHWM: 1 kB\nVmRSS: 2 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseStatus(bufio.NewScanner(bytes.NewReader(b)))
		if err == nil && (m.HWM <= 0 || m.RSS <= 0 || m.Anon < 0 || m.File < 0 || m.Shmem < 0) {
			t.Errorf("no error but %+v", m)
		}
	})
}
