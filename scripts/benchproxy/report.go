package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
)

// report is the whole run, as written to results.json.
type report struct {
	Generated string   `json:"generated"`
	Machine   machine  `json:"machine"`
	Settings  settings `json:"settings"`
	Skipped   []skip   `json:"skipped,omitempty"`
	// Network is where the stand-in ran (netns or loopback).
	Network network `json:"network"`
	// Prefill is the log sessctl started with, when one was prefilled.
	Prefill  *prefill        `json:"prefilled_log,omitempty"`
	Profiles []profileResult `json:"profiles,omitempty"`
	Results  []result        `json:"results"`
	Memory   []memoryResult  `json:"memory,omitempty"`
	Targets  []target        `json:"targets,omitempty"`
	// Verify is the first line of `sessctl verify` on the log the run
	// wrote.
	Verify string `json:"sessctl_verify,omitempty"`
}

type machine struct {
	NProc       int    `json:"nproc"`
	CPUModel    string `json:"cpu_model"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"go_version"`
	Mitmproxy   string `json:"mitmproxy,omitempty"`
	SessctlRev  string `json:"sessctl_commit,omitempty"`
	LoadAvgFrom string `json:"loadavg_at_start"`
	LoadAvgTo   string `json:"loadavg_at_end,omitempty"`
}

type settings struct {
	WarmupS         float64 `json:"warmup_s"`
	DurationS       float64 `json:"duration_s"`
	Rounds          int     `json:"rounds"`
	StreamDurationS float64 `json:"stream_duration_s"`
	Deltas          int     `json:"deltas_per_stream"`
	IntervalMS      float64 `json:"delta_interval_ms"`
	PromptBytes     int     `json:"prompt_bytes"`
	BigBytes        int64   `json:"big_bytes"`
	// GzipAnswers says the stand-in compresses non-streamed answers for
	// clients that accept gzip (all of the harness's do).
	GzipAnswers bool `json:"gzip_answers"`
	Quick       bool `json:"quick,omitempty"`
}

type skip struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// target is one goal of issue 14 and whether this run met it.
type target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	// Met is nil when a path the target needs was not measured.
	Met *bool `json:"met"`
}

func describeMachine(o options) machine {
	m := machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvgFrom = strings.TrimSpace(string(b))
	}
	if o.mitmdump != "" {
		if out, err := exec.Command(o.mitmdump, "--version").Output(); err == nil {
			m.Mitmproxy, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
		}
	}
	if o.sessctl != "" {
		dir := filepath.Dir(o.sessctl)
		if out, err := exec.Command("git", "-C", dir, "describe", "--always", "--dirty").Output(); err == nil {
			m.SessctlRev = strings.TrimSpace(string(out))
		}
	}
	return m
}

// find returns the result of path under workload, or nil.
func (r *report) find(path, workload string) *result {
	for i := range r.Results {
		if r.Results[i].Path == path && r.Results[i].Workload == workload {
			return &r.Results[i]
		}
	}
	return nil
}

// compare fills in the differences from the direct path and judges the
// goals of issue 14.
func (r *report) compare() {
	for i := range r.Results {
		x := &r.Results[i]
		d := r.find("direct", x.Workload)
		if d == nil || x.Path == "direct" || x.Requests == 0 || d.Requests == 0 {
			continue
		}
		x.AddedP50MS = ptr(x.Latency.P50 - d.Latency.P50)
		if x.TTFD != nil && d.TTFD != nil {
			x.AddedTTFDP50MS = ptr(x.TTFD.P50 - d.TTFD.P50)
			x.AddedFirstWholeP50MS = ptr(x.FirstWhole.P50 - d.FirstWhole.P50)
			x.AddedGapP99MS = ptr(x.Gap.P99 - d.Gap.P99)
		}
	}
	r.judge()
}

func ptr(f float64) *float64 { return &f }

// print writes the tables.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nmachine: %d × %s, Linux %s, %s; mitmproxy: %s; sessctl %s\n", r.Machine.NProc, r.Machine.CPUModel,
		r.Machine.Kernel, r.Machine.GoVersion, orNone(r.Machine.Mitmproxy), orNone(r.Machine.SessctlRev))
	fmt.Fprintf(w, "%s\n%s\n", r.networkLine(), r.prefillLine())
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", s.Path, s.Reason)
	}
	fmt.Fprintln(w, "\nnon-streaming chat completions, gzip answers (latency: request sent to answer read, ms; gzip: answers still compressed at the client)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tpath\treq/s\t×direct\tp50\tp99\t+p50\tgzip\tRSS MiB\tanon\tCPU s/1k req\terrors\t")
	for _, x := range r.Results {
		if x.Stream {
			continue
		}
		q := "-"
		if d := r.find("direct", x.Workload); d != nil && d.RPS > 0 {
			q = fmt.Sprintf("%.2f", x.RPS/d.RPS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", x.Workload, x.Path, x.RPS, q, x.Latency.P50, x.Latency.P99,
			opt(x.AddedP50MS), pct(x.GzipAnswers), opt(x.PeakRSSMiB), opt(x.PeakAnonMiB), opt(x.CPUPer1k), x.Errors)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nstreamed answers (ms; TTFD: first event with text; whole: first delta's text complete; gap: between deltas' completions; ev gap: between events on the wire; split: deltas spread over 2+ events)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tpath\treq/s\tTTFD p50\tTTFD p99\t+TTFD\twhole p50\t+whole\tgap p50\tgap p99\t+gap p99\tev gap p99\tsplit\tRSS MiB\tanon\tCPU s/1k req\terrors\t")
	for _, x := range r.Results {
		if !x.Stream {
			continue
		}
		if x.TTFD == nil || x.Requests == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t%s\t%s\t%d\t\n", x.Workload, x.Path, x.RPS, opt(x.PeakRSSMiB), opt(x.PeakAnonMiB), opt(x.CPUPer1k), x.Errors)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.2f\t%s\t%.2f\t%s\t%.2f\t%.2f\t%s\t%.2f\t%.0f%%\t%s\t%s\t%s\t%d\t\n", x.Workload, x.Path, x.RPS,
			x.TTFD.P50, x.TTFD.P99, opt(x.AddedTTFDP50MS), x.FirstWhole.P50, opt(x.AddedFirstWholeP50MS),
			x.Gap.P50, x.Gap.P99, opt(x.AddedGapP99MS), x.EventGap.P99, 100*deref(x.SplitDeltas), opt(x.PeakRSSMiB), opt(x.PeakAnonMiB), opt(x.CPUPer1k), x.Errors)
	}
	tw.Flush()
	for _, x := range r.Results {
		if x.FirstError != "" {
			fmt.Fprintf(w, "first error %s %s: %s\n", x.Path, x.Workload, x.FirstError)
		}
	}
	if r.find("sessctl-tmpfs", "chat-c1") != nil {
		fmt.Fprintln(w, "\nsessctl-tmpfs is a diagnostic: sessctl with its log on /dev/shm, where fsync returns at once. Targets are judged on sessctl.")
	}
	if len(r.Memory) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "path\tcase\tbaseline RSS MiB\tpeak RSS MiB\tpeak anon\tseconds\tresult")
		for _, m := range r.Memory {
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\n", m.Path, m.Case, m.BaselineRSSMiB, m.PeakRSSMiB, m.PeakAnonMiB, m.Seconds, m.Result)
		}
		tw.Flush()
	}
	if r.Verify != "" {
		fmt.Fprintf(w, "\nsessctl verify: %s\n", r.Verify)
	}
	for _, p := range r.Profiles {
		if p.Err != "" {
			fmt.Fprintf(w, "\nprofile %s %s: %s\n", p.Path, p.Workload, p.Err)
		} else {
			fmt.Fprintf(w, "\nprofile %s %s (%.0f req/s while profiled): %s; top in the Markdown report\n", p.Path, p.Workload, p.RPS, p.File)
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "target\tgoal\tmeasured\tmet")
		for _, t := range r.Targets {
			met := "n/a"
			if t.Met != nil {
				met = map[bool]string{true: "met", false: "MISSED"}[*t.Met]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Goal, t.Measured, met)
		}
		tw.Flush()
	}
}

func opt(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *f)
}

func deref(f *float64) float64 {
	if f == nil {
		return 0
	}
	return *f
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// write stores the report as indented JSON.
func (r *report) write(file string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}
