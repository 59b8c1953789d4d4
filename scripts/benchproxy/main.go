// Command benchproxy measures what a gate in front of api.openai.com costs.
//
// It starts a TLS stand-in for the API (with a throwaway CA of its own) as
// a process of its own, in a network namespace created for it when run as
// root (else on loopback, with a message), then drives the same workloads
// against it several ways: directly, as the physical limit of the machine;
// through a bare goproxy MITM that only swaps the key (the floor of the
// library sessctl is built on); through mitmproxy (mitmdump), the MITM
// proxy people reach for; and through sessctl with its defaults (recording,
// built-in rules, fsync), starting from a log prefilled with -log-records
// records. Workloads are interleaved, so that the paths of one workload are
// measured close together in time. Non-streamed answers come gzip-compressed
// when the client accepts it, as the API's do. It reports requests/s,
// latency percentiles, time to first streamed delta and the gaps between
// deltas as the client sees them, and each proxy process's peak RSS
// (VmHWM, reset before each workload, with its anonymous part) and CPU time
// (utime+stime) from /proc. After the measured rounds of the non-streaming
// workloads it takes CPU profiles of sessctl from its admin listener in a
// round of their own. It then sends 50 MB bodies through each proxy and
// reports what happened and the peak RSS.
//
// The figures are printed as a table and written as JSON (-out) and
// Markdown (results.md in -work), with issue 14's goals judged. Nothing is
// asserted: benchmarks report, they never fail a build on a number.
//
// Usage:
//
//	go build -o bin/benchproxy ./scripts/benchproxy
//	bin/benchproxy -sessctl bin/sessctl -mitmdump "$(command -v mitmdump)" -out bench/results.json
//	bin/benchproxy -quick ...   # short phases, no prefilled log, no memory cases
//
// scripts/bench-proxy.sh (make bench-proxy) is the usual entry point.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings of one run.
type options struct {
	sessctl        string
	mitmdump       string
	out            string
	work           string
	paths          []string
	warmup         time.Duration
	duration       time.Duration
	streamDuration time.Duration
	deltas         int
	interval       time.Duration
	bigBytes       int64
	rounds         int
	memory         bool
	perf           string
	standIn        bool
	holdback       bool
	netns          bool
	logRecords     int
	profileSeconds int
	goBin          string
	quick          bool

	// Modes run as child processes of a run.
	standInListen string
	bare          bool
	listen        string
	upstreamAddr  string
	upstreamCA    string

	// self is this harness's binary, run again for the stand-in and the
	// bare goproxy (default: os.Executable).
	self string
}

// executable returns the binary to run for the harness's own modes.
func (o options) executable() (string, error) {
	if o.self != "" {
		return o.self, nil
	}
	return os.Executable()
}

func main() {
	var o options
	var paths string
	flag.StringVar(&o.sessctl, "sessctl", "bin/sessctl", "sessctl binary (empty: skip the sessctl path)")
	flag.StringVar(&o.mitmdump, "mitmdump", "", "mitmdump binary (empty: skip the mitmproxy path)")
	flag.StringVar(&o.out, "out", "bench/results.json", "where to write the results")
	flag.StringVar(&o.work, "work", "bench/out", "directory for raw outputs: CAs, data dirs, proxy logs")
	flag.StringVar(&paths, "paths", "direct,bare-goproxy,mitmproxy,sessctl,sessctl-tmpfs", "paths to measure, comma-separated: direct, bare-goproxy (goproxy MITM swapping the key, nothing else), mitmproxy, sessctl, and sessctl-tmpfs (diagnostic: sessctl with its log on /dev/shm, where fsync costs nothing)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each workload")
	flag.DurationVar(&o.duration, "duration", 6*time.Second, "measured time of each non-streaming workload")
	flag.DurationVar(&o.streamDuration, "stream-duration", 8*time.Second, "measured time of each streaming workload")
	flag.IntVar(&o.rounds, "rounds", 4, "interleaved measured rounds per workload (each path gets duration/rounds per round)")
	flag.IntVar(&o.deltas, "deltas", 20, "deltas in each streamed answer")
	flag.DurationVar(&o.interval, "interval", 20*time.Millisecond, "time between streamed deltas")
	flag.Int64Var(&o.bigBytes, "big", 50_000_000, "size of the large request and answers in the memory cases (bytes)")
	flag.BoolVar(&o.memory, "memory", true, "run the large-body memory cases")
	flag.StringVar(&o.perf, "perf", "", "profile the sessctl process with perf(1) during each measured workload, writing reports to this directory (figures of such a run are distorted by perf and are not written to -out)")
	flag.BoolVar(&o.standIn, "standin", false, "only run the upstream stand-in (printing its address and CA file) until interrupted")
	flag.StringVar(&o.standInListen, "standin-listen", "127.0.0.1:0", "with -standin: the address to listen on")
	flag.BoolVar(&o.holdback, "holdback", false, "only show which deltas of the streamed answer sessctl's built-in rules hold back in part, all rules and rule by rule")
	flag.BoolVar(&o.netns, "netns", true, "run the stand-in in a network namespace of its own (needs root and ip; else loopback, with a message)")
	flag.IntVar(&o.logRecords, "log-records", 1_000_000, "prefill sessctl's log with this many records before the run (generated once, cached in -work as log-N, copied fresh for each run; 0: start empty)")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 10, "CPU-profile sessctl for this long from its admin listener after the measured rounds of chat-c1 and chat-c16 (0: no profiles)")
	flag.StringVar(&o.goBin, "go", envOr("GO", "go"), "go command, for go tool pprof")
	flag.BoolVar(&o.quick, "quick", false, "a short run for iteration: 0.3 s warm-up, 2 s phases in 2 rounds, no memory cases, no prefilled log and 2 s profiles unless those flags are given")
	flag.BoolVar(&o.bare, "bare-goproxy", false, "only run the bare goproxy MITM (real key from OPENAI_API_KEY) on -listen, for -upstream-addr trusting -upstream-ca, until interrupted; its CA goes to -work/ca.crt")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "with -bare-goproxy: the address to listen on")
	flag.StringVar(&o.upstreamAddr, "upstream-addr", "", "with -bare-goproxy: where api.openai.com is dialled")
	flag.StringVar(&o.upstreamCA, "upstream-ca", "", "with -bare-goproxy: the upstream's CA file")
	flag.Parse()
	o.paths = strings.Split(paths, ",")
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := []struct {
			name string
			fn   func()
		}{
			{"warmup", func() { o.warmup = 300 * time.Millisecond }},
			{"duration", func() { o.duration = 2 * time.Second }},
			{"stream-duration", func() { o.streamDuration = 2 * time.Second }},
			{"rounds", func() { o.rounds = 2 }},
			{"memory", func() { o.memory = false }},
			{"log-records", func() { o.logRecords = 0 }},
			{"profile-seconds", func() { o.profileSeconds = 2 }},
		}
		for _, q := range quick {
			if !set[q.name] {
				q.fn()
			}
		}
	}
	if o.perf != "" || o.rounds < 1 {
		// One profile per workload.
		o.rounds = 1
	}

	if o.holdback {
		holdbackReport(os.Stdout, o.deltas)
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case o.standIn:
		err = serveStandIn(ctx, o)
	case o.bare:
		err = serveBareGoproxy(ctx, o.listen, o.work, bareOptions{UpstreamAddr: o.upstreamAddr, UpstreamCA: o.upstreamCA, Key: os.Getenv("OPENAI_API_KEY")})
	default:
		err = run(ctx, o, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchproxy:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
