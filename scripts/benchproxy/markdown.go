package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// markdown writes the report's tables in Markdown, for BENCHMARKS.md.
func (r *report) markdown(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Run %s on %d × %s, Linux %s, %s; %s; sessctl %s; /proc/loadavg at start %q, at end %q.\n\n",
		r.Generated, m.NProc, m.CPUModel, m.Kernel, m.GoVersion, orNone(m.Mitmproxy), orNone(m.SessctlRev), m.LoadAvgFrom, m.LoadAvgTo)
	fmt.Fprintln(w, "Non-streaming chat completions (ms; latency = request sent to answer read; +p50 = added to direct's p50):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | path | req/s | p50 | p99 | +p50 | peak RSS MiB | of which anon | CPU s / 1k req | errors |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Results {
		if x.Stream {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.2f | %.2f | %s | %s | %s | %s | %d |\n", x.Workload, x.Path, x.RPS,
			x.Latency.P50, x.Latency.P99, opt(x.AddedP50MS), opt(x.PeakRSSMiB), opt(x.PeakAnonMiB), opt(x.CPUPer1k), x.Errors)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Streamed answers (ms; TTFD = first event carrying text; whole = first delta's text complete; gap = between the completions of consecutive deltas; ev gap = between events on the wire; split = deltas whose text arrived over 2+ events):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | path | TTFD p50 | TTFD p99 | +TTFD p50 | whole p50 | +whole p50 | gap p50 | gap p99 | +gap p99 | ev gap p99 | split | peak RSS MiB | of which anon | CPU s / 1k req | errors |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Results {
		if !x.Stream || x.TTFD == nil {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.2f | %.2f | %s | %.2f | %s | %.2f | %.2f | %s | %.2f | %.0f%% | %s | %s | %s | %d |\n",
			x.Workload, x.Path, x.TTFD.P50, x.TTFD.P99, opt(x.AddedTTFDP50MS), x.FirstWhole.P50, opt(x.AddedFirstWholeP50MS),
			x.Gap.P50, x.Gap.P99, opt(x.AddedGapP99MS), x.EventGap.P99, 100*deref(x.SplitDeltas), opt(x.PeakRSSMiB), opt(x.PeakAnonMiB), opt(x.CPUPer1k), x.Errors)
	}
	if len(r.Memory) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Large bodies (%d bytes), each on a fresh proxy process:\n\n", r.Settings.BigBytes)
		fmt.Fprintln(w, "| path | case | baseline RSS MiB | peak RSS MiB | of which anon | s | result |")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|---|")
		for _, x := range r.Memory {
			fmt.Fprintf(w, "| %s | %s | %.1f | %.1f | %.1f | %.1f | %s |\n", x.Path, x.Case, x.BaselineRSSMiB, x.PeakRSSMiB, x.PeakAnonMiB, x.Seconds,
				strings.ReplaceAll(x.Result, "|", `\|`))
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | goal | measured | |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, t := range r.Targets {
			met := "n/a"
			if t.Met != nil {
				met = map[bool]string{true: "met", false: "**missed**"}[*t.Met]
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Goal, t.Measured, met)
		}
	}
}

// writeMarkdown writes the Markdown tables to file.
func (r *report) writeMarkdown(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("markdown: %w", err)
	}
	r.markdown(f)
	if err := f.Close(); err != nil {
		return fmt.Errorf("markdown: %w", err)
	}
	return nil
}
