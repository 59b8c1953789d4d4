package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

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

// cleanWork removes the raw outputs of the previous run from work; the
// cached logs (log-N) stay.
func cleanWork(work string) error {
	old, _ := filepath.Glob(filepath.Join(work, "*"))
	for _, f := range old {
		switch b := filepath.Base(f); {
		case b == "upstream", b == "profiles", strings.HasPrefix(b, "mitmproxy"), strings.HasPrefix(b, "sessctl"), strings.HasPrefix(b, "bare-goproxy"):
			if err := os.RemoveAll(f); err != nil {
				return fmt.Errorf("work dir: %w", err)
			}
		}
	}
	return os.MkdirAll(work, 0o755)
}

// run performs one benchmark run and writes its report.
func run(ctx context.Context, o options, log *slog.Logger) error {
	run, err := filepath.Abs(o.work)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if err := cleanWork(run); err != nil {
		return err
	}
	tok, err := newTokens()
	if err != nil {
		return err
	}
	si, err := startStandIn(ctx, o, run, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := si.Close(); err != nil {
			log.Warn("stand-in teardown", "err", err)
		}
	}()
	up := si.upstream
	log.Info("upstream stand-in listening", "addr", up.Addr, "network", si.Net.Mode, "ca", up.CAFile)

	rep := &report{
		Generated: time.Now().UTC().Format(time.RFC3339),
		Machine:   describeMachine(o),
		Settings: settings{
			WarmupS: o.warmup.Seconds(), DurationS: o.duration.Seconds(), StreamDurationS: o.streamDuration.Seconds(),
			Rounds: o.rounds, Deltas: o.deltas, IntervalMS: ms(o.interval), PromptBytes: len(chatBody(false)), BigBytes: o.bigBytes,
			GzipAnswers: true, Quick: o.quick,
		},
		Network: si.Net,
	}

	// The prefilled log, when a sessctl path is measured.
	var seed string
	if o.logRecords > 0 && o.sessctl != "" && (slices.Contains(o.paths, "sessctl") || slices.Contains(o.paths, "sessctl-tmpfs")) {
		if seed, rep.Prefill, err = cachedLog(ctx, o.sessctl, run, o.logRecords, tok, log); err != nil {
			return err
		}
		rep.Prefill.CopyS = map[string]float64{}
	}

	var ps []*path
	defer func() {
		for _, p := range ps {
			p.Stop()
		}
	}()
	// start starts a path; dir holds its raw outputs; seed, when set, is
	// the data directory a sessctl path starts from.
	start := func(name, dir, seed string) (*path, error) {
		switch name {
		case "direct":
			return directPath(up), nil
		case "bare-goproxy":
			return startBarePath(ctx, o, filepath.Join(run, dir), up)
		case "mitmproxy":
			if o.mitmdump == "" {
				return nil, fmt.Errorf("mitmdump not found (install it with: apt-get install -y mitmproxy)")
			}
			return startMitmproxy(ctx, o.mitmdump, filepath.Join(run, dir), up)
		case "sessctl", "sessctl-tmpfs":
			if o.sessctl == "" {
				return nil, fmt.Errorf("no sessctl binary given")
			}
			p, took, err := startSessctl(ctx, o.sessctl, filepath.Join(run, dir), name == "sessctl-tmpfs", up, tok, seed)
			if err == nil && seed != "" {
				rep.Prefill.CopyS[name] = took.Seconds()
				log.Info("copied the prefilled log", "path", name, "seconds", fmt.Sprintf("%.1f", took.Seconds()))
			}
			return p, err
		}
		return nil, fmt.Errorf("unknown path")
	}
	for _, name := range o.paths {
		name = strings.TrimSpace(name)
		p, err := start(name, name, seed)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("skipping path", "path", name, "reason", err)
			rep.Skipped = append(rep.Skipped, skip{Path: name, Reason: err.Error()})
			continue
		}
		log.Info("path ready", "path", p.Name, "pid", p.PID)
		ps = append(ps, p)
	}

	if o.perf != "" {
		if err := os.MkdirAll(o.perf, 0o755); err != nil {
			return fmt.Errorf("perf dir: %w", err)
		}
	}
	for _, w := range workloads {
		if err := measureWorkload(ctx, o, w, ps, up, rep, log); err != nil {
			return err
		}
		// Profiles in a round of their own, after the measured rounds.
		if !w.Stream && o.profileSeconds > 0 && o.perf == "" {
			for _, p := range ps {
				if p.Name != "sessctl" || ctx.Err() != nil {
					continue
				}
				pr := profileRound(ctx, p, w, o.profileSeconds, o.deltas, filepath.Join(run, "profiles"), o.goBin)
				log.Info("profiled", "path", p.Name, "workload", pr.Workload, "file", pr.File, "err", pr.Err)
				rep.Profiles = append(rep.Profiles, pr)
			}
		}
	}
	if o.memory {
		if err := measureMemoryCases(ctx, o, ps, start, rep, log); err != nil {
			return err
		}
	}
	for _, p := range ps {
		if p.Name == "sessctl" {
			p.Stop()
			log.Info("verifying sessctl's log")
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

// measureWorkload warms every path up, then measures w in interleaved
// rounds, so that a change in the machine's background load during the
// run falls on every path alike.
func measureWorkload(ctx context.Context, o options, w workload, ps []*path, up *upstream, rep *report, log *slog.Logger) error {
	d := o.duration
	if w.Stream {
		d = o.streamDuration
	}
	tallies := make([]*tally, len(ps))
	for i, p := range ps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		tallies[i] = warm(ctx, p, w, o.warmup, o.deltas)
		tallies[i].upPID = up.PID()
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
	return nil
}

// measureMemoryCases runs the large-body cases, each on a fresh proxy
// process (with an empty log), so that memory kept from an earlier case
// (the Go runtime returns freed memory to the kernel lazily) does not
// count against a later one.
func measureMemoryCases(ctx context.Context, o options, ps []*path, start func(name, dir, seed string) (*path, error), rep *report, log *slog.Logger) error {
	for _, p := range ps {
		if p.Name != "mitmproxy" && p.Name != "sessctl" {
			continue
		}
		for _, c := range memoryCases(o.bigBytes) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fresh, err := start(p.Name, p.Name+"-mem-"+c.Name, "")
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
	return nil
}
