package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// markdown writes the report's tables in Markdown, for BENCHMARKS.md.
func (r *report) markdown(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Run %s on %d × %s, Linux %s, %s; %s; sessctl %s; /proc/loadavg at start %q, at end %q.\n\n",
		r.Generated, m.NProc, m.CPUModel, m.Kernel, m.GoVersion, orNone(m.Mitmproxy), orNone(m.SessctlRev), m.LoadAvgFrom, m.LoadAvgTo)
	fmt.Fprintf(w, "%s %s\n\n", r.networkLine(), r.prefillLine())
	r.summaryMarkdown(w)
	fmt.Fprintln(w, "Non-streaming chat completions, answers gzip-compressed by the stand-in (ms; latency = request sent to answer read; +p50 = added to direct's p50; gzip = share of answers that reached the client still compressed):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | path | req/s | p50 | p99 | +p50 | gzip | peak RSS MiB | of which anon | CPU s / 1k req | errors |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, x := range r.Results {
		if x.Stream {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s | %d |\n", x.Workload, x.Path, x.RPS,
			x.Latency.P50, x.Latency.P99, opt(x.AddedP50MS), pct(x.GzipAnswers), opt(x.PeakRSSMiB), opt(x.PeakAnonMiB), opt(x.CPUPer1k), x.Errors)
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
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Goal, strings.ReplaceAll(t.Measured, "|", `\|`), met)
		}
	}
	r.profilesMarkdown(w)
}

// summaryMarkdown writes issue 14's table: throughput at c=16 and added
// p50 at c=1, every path side by side.
func (r *report) summaryMarkdown(w io.Writer) {
	d16 := r.find("direct", "chat-c16")
	if d16 == nil {
		return
	}
	fmt.Fprintln(w, "Issue 14's table (non-streaming chat completions, gzip answers):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| path | req/s at c=16 | × direct | added p50 at c=1 | CPU s / 1k req at c=16 |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|")
	for _, name := range r.paths() {
		x16, x1 := r.find(name, "chat-c16"), r.find(name, "chat-c1")
		rps, q, added, cpu := "-", "-", "—", "-"
		if x16 != nil && x16.Requests > 0 {
			rps, q, cpu = fmt.Sprintf("%.0f", x16.RPS), fmt.Sprintf("%.2f", x16.RPS/d16.RPS), opt(x16.CPUPer1k)
		}
		if x1 != nil && x1.AddedP50MS != nil {
			added = fmt.Sprintf("%+.2f ms", *x1.AddedP50MS)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", name, rps, q, added, cpu)
	}
	fmt.Fprintln(w)
}

// profilesMarkdown writes the top functions of each CPU profile.
func (r *report) profilesMarkdown(w io.Writer) {
	if len(r.Profiles) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU profiles of sessctl (GET /debug/pprof/profile from its admin listener, in a round of their own after the measured rounds; `go tool pprof -top`):")
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\n%s, %s, %d s at %.0f req/s, `%s`", p.Path, p.Workload, p.Seconds, p.RPS, relPath(p.File))
		if p.Err != "" {
			fmt.Fprintf(w, ": %s\n", p.Err)
			continue
		}
		fmt.Fprintf(w, "\n\nBy own time (flat):\n\n```text\n%s\n```\n\nBy cumulative time:\n\n```text\n%s\n```\n", p.Flat, p.Cum)
	}
}

// paths returns the measured paths in the order of the results.
func (r *report) paths() []string {
	var names []string
	for _, x := range r.Results {
		if !slices.Contains(names, x.Path) {
			names = append(names, x.Path)
		}
	}
	return names
}

// networkLine says where the stand-in ran.
func (r *report) networkLine() string {
	if r.Network.Mode == "netns" {
		return fmt.Sprintf("The stand-in ran in its own network namespace (%s, %s, over a veth pair).", r.Network.Namespace, r.Network.Addr)
	}
	return fmt.Sprintf("The stand-in ran on loopback (%s): no network namespace (%s).", r.Network.Addr, r.Network.Reason)
}

// prefillLine says what log sessctl started with.
func (r *report) prefillLine() string {
	p := r.Prefill
	if p == nil {
		return "sessctl started with an empty log."
	}
	how := fmt.Sprintf("generated in %.0f s", p.GenerateS)
	if p.Reused {
		how = fmt.Sprintf("generated once in %.0f s and reused from %s", p.GenerateS, p.Cache)
	}
	var copies []string
	for _, name := range slices.Sorted(maps.Keys(p.CopyS)) {
		copies = append(copies, fmt.Sprintf("%s %.1f s", name, p.CopyS[name]))
	}
	return fmt.Sprintf("sessctl started from a log prefilled with %d records (%.0f MiB; %s; fresh copy per run: %s).",
		p.Records, mib(p.Bytes), how, strings.Join(copies, ", "))
}

func pct(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100**f)
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

// relPath is file relative to the working directory when it is below it.
func relPath(file string) string {
	wd, err := os.Getwd()
	if err != nil {
		return file
	}
	if rel, err := filepath.Rel(wd, file); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return file
}
