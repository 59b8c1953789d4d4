// Command benchproxy measures what a gate in front of api.openai.com costs.
//
// It starts a local TLS stand-in for the API (with a throwaway CA of its
// own), then drives the same workloads against it three ways: directly, as
// the physical limit of the machine; through mitmproxy (mitmdump), the MITM
// proxy people reach for; and through sessctl with its defaults (recording,
// built-in rules, fsync). Workloads are interleaved, so that the three paths
// of one workload are measured close together in time. It reports
// requests/s, latency percentiles, time to first streamed delta and the gaps
// between deltas as the client sees them, and the proxy process's peak RSS
// (VmHWM, reset before each workload) and CPU time (utime+stime) from /proc.
// It then sends 50 MB bodies through each proxy and reports what happened
// and the peak RSS.
//
// The figures are printed as a table and written as JSON (-out). Nothing is
// asserted: benchmarks report, they never fail a build on a number.
//
// Usage:
//
//	go build -o bin/benchproxy ./scripts/benchproxy
//	bin/benchproxy -sessctl bin/sessctl -mitmdump "$(command -v mitmdump)" -out bench/results.json
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
	"path/filepath"
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
}

func main() {
	var o options
	var paths string
	flag.StringVar(&o.sessctl, "sessctl", "bin/sessctl", "sessctl binary (empty: skip the sessctl path)")
	flag.StringVar(&o.mitmdump, "mitmdump", "", "mitmdump binary (empty: skip the mitmproxy path)")
	flag.StringVar(&o.out, "out", "bench/results.json", "where to write the results")
	flag.StringVar(&o.work, "work", "bench/out", "directory for raw outputs: CAs, data dirs, proxy logs")
	flag.StringVar(&paths, "paths", "direct,mitmproxy,sessctl,sessctl-tmpfs", "paths to measure, comma-separated: direct, mitmproxy, sessctl, and sessctl-tmpfs (diagnostic: sessctl with its log on /dev/shm, where fsync costs nothing)")
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
	flag.BoolVar(&o.holdback, "holdback", false, "only show which deltas of the streamed answer sessctl's built-in rules hold back in part, all rules and rule by rule")
	flag.Parse()
	o.paths = strings.Split(paths, ",")
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
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "benchproxy:", err)
		os.Exit(1)
	}
}

// perfHook returns a profile hook for tally.round that records pid with
// perf into base.data and base.txt.
func perfHook(ctx context.Context, log *slog.Logger, pid int, base string) func() func() {
	return func() func() {
		prof, err := startPerf(ctx, pid, base)
		if err != nil {
			log.Warn("perf", "err", err)
			return func() {}
		}
		return func() {
			if err := prof.finish(); err != nil {
				log.Warn("perf", "err", err)
			}
		}
	}
}

// run performs one benchmark run and writes its report.
func run(ctx context.Context, o options, log *slog.Logger) error {
	work, err := filepath.Abs(o.work)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	// Raw outputs of the previous run are replaced.
	run := work
	old, _ := filepath.Glob(filepath.Join(run, "*"))
	for _, f := range old {
		switch b := filepath.Base(f); {
		case b == "upstream", strings.HasPrefix(b, "mitmproxy"), strings.HasPrefix(b, "sessctl"):
			if err := os.RemoveAll(f); err != nil {
				return fmt.Errorf("work dir: %w", err)
			}
		}
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	up, err := startUpstream(filepath.Join(run, "upstream"), o.deltas, o.interval)
	if err != nil {
		return err
	}
	defer up.Close()
	log.Info("upstream stand-in listening", "addr", up.Addr, "ca", up.CAFile)
	if o.standIn {
		fmt.Printf("upstream_addr=%s upstream_ca_file=%s real_key=%s\n", up.Addr, up.CAFile, realKey)
		<-ctx.Done()
		return nil
	}

	var ps []*path
	defer func() {
		for _, p := range ps {
			p.Stop()
		}
	}()
	// start starts a path; dir holds its raw outputs.
	start := func(name, dir string) (*path, error) {
		switch name {
		case "direct":
			return directPath(up), nil
		case "mitmproxy":
			if o.mitmdump == "" {
				return nil, fmt.Errorf("mitmdump not found (install it with: apt-get install -y mitmproxy)")
			}
			return startMitmproxy(ctx, o.mitmdump, filepath.Join(run, dir), up)
		case "sessctl":
			if o.sessctl == "" {
				return nil, fmt.Errorf("no sessctl binary given")
			}
			return startSessctl(ctx, o.sessctl, filepath.Join(run, dir), false, up)
		case "sessctl-tmpfs":
			if o.sessctl == "" {
				return nil, fmt.Errorf("no sessctl binary given")
			}
			return startSessctl(ctx, o.sessctl, filepath.Join(run, dir), true, up)
		}
		return nil, fmt.Errorf("unknown path")
	}
	var skipped []skip
	for _, name := range o.paths {
		name = strings.TrimSpace(name)
		p, err := start(name, name)
		if err != nil {
			log.Warn("skipping path", "path", name, "reason", err)
			skipped = append(skipped, skip{Path: name, Reason: err.Error()})
			continue
		}
		log.Info("path ready", "path", p.Name, "pid", p.PID)
		ps = append(ps, p)
	}

	rep := &report{
		Generated: time.Now().UTC().Format(time.RFC3339),
		Machine:   describeMachine(o),
		Settings: settings{
			WarmupS: o.warmup.Seconds(), DurationS: o.duration.Seconds(), StreamDurationS: o.streamDuration.Seconds(),
			Rounds: o.rounds, Deltas: o.deltas, IntervalMS: ms(o.interval), PromptBytes: len(chatBody(false)), BigBytes: o.bigBytes,
		},
		Skipped: skipped,
	}
	if o.perf != "" {
		if err := os.MkdirAll(o.perf, 0o755); err != nil {
			return fmt.Errorf("perf dir: %w", err)
		}
	}
	for _, w := range workloads {
		d := o.duration
		if w.Stream {
			d = o.streamDuration
		}
		// Warm every path up, then measure in interleaved rounds, so that
		// a change in the machine's background load during the run falls
		// on every path alike.
		tallies := make([]*tally, len(ps))
		for i, p := range ps {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			tallies[i] = warm(ctx, p, w, o.warmup, o.deltas)
		}
		for round := 0; round < o.rounds; round++ {
			for i, p := range ps {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var profile func() func()
				if o.perf != "" && p.Name == "sessctl" {
					profile = perfHook(ctx, log, p.PID, filepath.Join(o.perf, "sessctl-"+w.String()))
				}
				tallies[i].round(ctx, d/time.Duration(o.rounds), o.deltas, profile)
			}
		}
		for _, t := range tallies {
			r := t.result()
			log.Info("measured", "path", r.Path, "workload", r.Workload, "rps", fmt.Sprintf("%.0f", r.RPS),
				"p50_ms", fmt.Sprintf("%.2f", r.Latency.P50), "errors", r.Errors)
			rep.Results = append(rep.Results, r)
		}
	}
	if o.memory {
		// Each case on a fresh proxy process, so that memory kept from an
		// earlier case (the Go runtime returns freed memory to the kernel
		// lazily) does not count against a later one.
		for _, p := range ps {
			if p.Name != "mitmproxy" && p.Name != "sessctl" {
				continue
			}
			for _, c := range memoryCases(o.bigBytes) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fresh, err := start(p.Name, p.Name+"-mem-"+c.Name)
				if err != nil {
					log.Warn("memory case", "path", p.Name, "case", c.Name, "err", err)
					continue
				}
				m := measureMemory(ctx, fresh, c)
				fresh.Stop()
				log.Info("memory case", "path", p.Name, "case", c.Name, "result", m.Result, "peak_rss_mib", fmt.Sprintf("%.1f", m.PeakRSSMiB))
				rep.Memory = append(rep.Memory, m)
			}
		}
	}
	for _, p := range ps {
		if p.Name == "sessctl" {
			p.Stop()
			rep.Verify = p.verify()
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		rep.Machine.LoadAvgTo = strings.TrimSpace(string(b))
	}
	rep.compare()
	rep.print(os.Stdout)
	if o.perf != "" {
		fmt.Printf("\nperf reports in %s; figures of a profiled run are not written to %s\n", o.perf, o.out)
		return nil
	}
	if err := rep.write(o.out); err != nil {
		return err
	}
	md := filepath.Join(run, "results.md")
	if err := rep.writeMarkdown(md); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s (raw outputs in %s)\n", o.out, md, run)
	return nil
}
