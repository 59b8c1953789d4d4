package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// workload is one kind of traffic at one concurrency.
type workload struct {
	Stream      bool
	Concurrency int
}

func (w workload) String() string {
	kind := "chat"
	if w.Stream {
		kind = "stream"
	}
	return fmt.Sprintf("%s-c%d", kind, w.Concurrency)
}

// workloads are measured in this order, each on every path in turn.
var workloads = []workload{
	{Stream: false, Concurrency: 1},
	{Stream: false, Concurrency: 16},
	{Stream: true, Concurrency: 1},
	{Stream: true, Concurrency: 16},
}

// chatBody is a typical chat completion request: a system prompt and a
// user message of about 1.5 KB with no secret in it.
func chatBody(stream bool) []byte {
	user := "The CI job failed. Here is the end of the log:\n" + strings.Repeat(
		"--- FAIL: TestLoadConfig (0.00s)\n    config_test.go:41: open testdata/config.yaml: no such file or directory\n", 12) +
		"What went wrong and how do I fix it?"
	b, _ := json.Marshal(map[string]any{
		"model": "gpt-4o-mini",
		"messages": []map[string]string{
			{"role": "system", "content": "You are a helpful assistant that explains CI failures concisely."},
			{"role": "user", "content": user},
		},
		"temperature": 0.2,
		"stream":      stream,
	})
	return b
}

// answerMark is a part of the non-streamed answer's text that every path
// must deliver intact.
var answerMark = []byte("testdata/configs/default.yaml")

// sample is what the client saw of one request.
type sample struct {
	total time.Duration
	// For streamed answers: the first event carrying text, the first
	// delta complete, the gaps between the completions of consecutive
	// deltas, and how many deltas arrived split over several events.
	ttfd, firstWhole time.Duration
	gaps, eventGaps  []time.Duration
	events, split    int
	// gzip says the answer reached the client gzip-compressed.
	gzip bool
	err  error
}

// do sends one chat completion and reads the whole answer. A streamed
// answer is timed event by event (see readStream).
func (p *path) do(ctx context.Context, body []byte, stream bool, want []string) sample {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.Base+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return sample{err: err}
	}
	if p.Host != "" {
		req.Host = p.Host
	}
	req.Header.Set("Authorization", "Bearer "+p.Credential)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := p.Client.Do(req)
	if err != nil {
		return sample{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return sample{err: fmt.Errorf("status %d: %s", resp.StatusCode, b)}
	}
	if !stream {
		b, err := io.ReadAll(resp.Body)
		if err == nil && !bytes.Contains(b, answerMark) {
			err = fmt.Errorf("answer is not the stand-in's (%d bytes)", len(b))
		}
		return sample{total: time.Since(start), gzip: resp.Uncompressed, err: err}
	}
	st, err := readStream(resp.Body, want, func() time.Duration { return time.Since(start) })
	if err != nil {
		return sample{err: err}
	}
	if _, err := readAllCount(resp.Body); err != nil {
		return sample{err: err}
	}
	s := sample{total: time.Since(start), ttfd: st.First, eventGaps: st.EventGaps, events: st.Events, split: st.Split}
	if len(st.Whole) > 0 {
		s.firstWhole = st.Whole[0]
	}
	for i := 1; i < len(st.Whole); i++ {
		s.gaps = append(s.gaps, st.Whole[i]-st.Whole[i-1])
	}
	return s
}

// runPhase keeps w.Concurrency requests in flight for d, then waits for
// the last ones to finish.
func runPhase(ctx context.Context, p *path, w workload, d time.Duration, deltas int) ([]sample, time.Duration) {
	body := chatBody(w.Stream)
	want := deltaTexts(deltas)
	start := time.Now()
	deadline := start.Add(d)
	per := make([][]sample, w.Concurrency)
	var wg sync.WaitGroup
	for i := range per {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				per[i] = append(per[i], p.do(ctx, body, w.Stream, want))
			}
		}()
	}
	wg.Wait()
	return slices.Concat(per...), time.Since(start)
}

// result is one path under one workload.
type result struct {
	Path        string  `json:"path"`
	Workload    string  `json:"workload"`
	Stream      bool    `json:"stream"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	DurationS   float64 `json:"duration_s"`
	RPS         float64 `json:"requests_per_s"`
	// Latency is the whole exchange: request sent to answer fully read.
	Latency    dist     `json:"latency_ms"`
	AddedP50MS *float64 `json:"added_p50_ms_vs_direct,omitempty"`
	// TTFD is the time from sending the request to the first SSE event.
	TTFD           *dist    `json:"ttfd_ms,omitempty"`
	AddedTTFDP50MS *float64 `json:"added_ttfd_p50_ms_vs_direct,omitempty"`
	// FirstWhole is the time until the first delta's text is complete.
	FirstWhole           *dist    `json:"first_whole_delta_ms,omitempty"`
	AddedFirstWholeP50MS *float64 `json:"added_first_whole_delta_p50_ms_vs_direct,omitempty"`
	// Gap is the time between the completions of consecutive deltas of
	// one answer.
	Gap           *dist    `json:"gap_ms,omitempty"`
	AddedGapP99MS *float64 `json:"added_gap_p99_ms_vs_direct,omitempty"`
	// EventGap is the time between consecutive events carrying text, as
	// they came off the wire (a proxy that splits deltas adds events).
	EventGap *dist `json:"event_gap_ms,omitempty"`
	// EventsPerStream is the mean number of text events per answer (the
	// upstream sends one per delta); SplitDeltas the fraction of deltas
	// whose text arrived over more than one event.
	EventsPerStream *float64 `json:"events_per_stream,omitempty"`
	SplitDeltas     *float64 `json:"split_deltas,omitempty"`
	// PeakRSSMiB is the proxy's VmHWM from the start of this workload's
	// warm-up to the end of its last round.
	PeakRSSMiB *float64 `json:"peak_rss_mib,omitempty"`
	// PeakAnonMiB and PeakFileMiB are the peaks of RSS's anonymous part
	// (heap, stacks) and of its file-backed and shared part (for sessctl
	// mostly bbolt's mmap of the log: page cache, shared and reclaimable),
	// sampled every 25 ms.
	PeakAnonMiB *float64 `json:"peak_rss_anon_mib,omitempty"`
	PeakFileMiB *float64 `json:"peak_rss_file_mib,omitempty"`
	// PeakIsLifetime is set when VmHWM could not be reset, so the peak
	// covers the proxy's whole life so far.
	PeakIsLifetime bool     `json:"peak_is_lifetime,omitempty"`
	CPUSeconds     *float64 `json:"cpu_s,omitempty"`
	CPUPer1k       *float64 `json:"cpu_s_per_1k_requests,omitempty"`
	// DriverCPUPer1k is the CPU of the benchmark process itself (the
	// client, and the stand-in when it runs in this process), which
	// shares the machine with the proxy; UpstreamCPUPer1k that of the
	// stand-in when it runs in a process of its own.
	DriverCPUPer1k   float64  `json:"driver_cpu_s_per_1k_requests"`
	UpstreamCPUPer1k *float64 `json:"upstream_cpu_s_per_1k_requests,omitempty"`
	// GzipAnswers is the fraction of non-streamed answers that reached
	// the client gzip-compressed (the stand-in sends all of them so).
	GzipAnswers *float64 `json:"gzip_answers,omitempty"`
}

// tally accumulates the measured rounds of one path under one workload.
type tally struct {
	p         *path
	w         workload
	samples   []sample
	elapsed   time.Duration
	proxyCPU  time.Duration
	driverCPU time.Duration
	// upPID is the stand-in's process (0: it runs in this one).
	upPID     int
	upCPU     time.Duration
	peakReset bool
	mem       *sampler
}

// warm resets the proxy's peak RSS, then runs an unmeasured warm-up
// (connections opened, leaves minted, caches filled).
func warm(ctx context.Context, p *path, w workload, d time.Duration, deltas int) *tally {
	t := &tally{p: p, w: w}
	if p.PID != 0 {
		t.peakReset = resetPeak(p.PID) == nil
		t.mem = startSampler(p.PID, 25*time.Millisecond)
	}
	runPhase(ctx, p, w, d, deltas)
	return t
}

// round runs one measured phase of d, metering the proxy's CPU and that
// of this process (client and stand-in). profile, when not nil, is started
// just before the phase and its returned func called just after.
func (t *tally) round(ctx context.Context, d time.Duration, deltas int, profile func() func()) {
	var end func()
	if profile != nil {
		end = profile()
	}
	var p0, p1, u0, u1 time.Duration
	if t.p.PID != 0 {
		p0, _ = cpuTime(t.p.PID)
	}
	if t.upPID != 0 {
		u0, _ = cpuTime(t.upPID)
	}
	s0, _ := cpuTime(os.Getpid())
	samples, elapsed := runPhase(ctx, t.p, t.w, d, deltas)
	s1, _ := cpuTime(os.Getpid())
	if t.p.PID != 0 {
		p1, _ = cpuTime(t.p.PID)
	}
	if t.upPID != 0 {
		u1, _ = cpuTime(t.upPID)
	}
	t.upCPU += u1 - u0
	if end != nil {
		end()
	}
	t.samples = append(t.samples, samples...)
	t.elapsed += elapsed
	t.proxyCPU += p1 - p0
	t.driverCPU += s1 - s0
}

// result summarises the rounds.
func (t *tally) result() result {
	w := t.w
	r := result{Path: t.p.Name, Workload: w.String(), Stream: w.Stream, Concurrency: w.Concurrency, DurationS: t.elapsed.Seconds()}
	var lat, ttfd, whole, gaps, evGaps []time.Duration
	var events, split, deltas, gz int
	for _, s := range t.samples {
		if s.err != nil {
			if r.Errors == 0 {
				r.FirstError = s.err.Error()
			}
			r.Errors++
			continue
		}
		r.Requests++
		lat = append(lat, s.total)
		if s.gzip {
			gz++
		}
		if w.Stream {
			ttfd = append(ttfd, s.ttfd)
			whole = append(whole, s.firstWhole)
			gaps = append(gaps, s.gaps...)
			evGaps = append(evGaps, s.eventGaps...)
			events += s.events
			split += s.split
			deltas += len(s.gaps) + 1
		}
	}
	if t.elapsed > 0 {
		r.RPS = float64(r.Requests) / t.elapsed.Seconds()
	}
	r.Latency = distOf(lat)
	if w.Stream {
		td, wd, gd, ed := distOf(ttfd), distOf(whole), distOf(gaps), distOf(evGaps)
		r.TTFD, r.FirstWhole, r.Gap, r.EventGap = &td, &wd, &gd, &ed
		if r.Requests > 0 {
			r.EventsPerStream = ptr(float64(events) / float64(r.Requests))
			r.SplitDeltas = ptr(float64(split) / float64(deltas))
		}
	}
	if r.Requests > 0 {
		r.DriverCPUPer1k = t.driverCPU.Seconds() / float64(r.Requests) * 1000
		if t.upPID != 0 {
			r.UpstreamCPUPer1k = ptr(t.upCPU.Seconds() / float64(r.Requests) * 1000)
		}
		if !w.Stream {
			r.GzipAnswers = ptr(float64(gz) / float64(r.Requests))
		}
	}
	if t.p.PID != 0 {
		cpu := t.proxyCPU.Seconds()
		r.CPUSeconds = &cpu
		if r.Requests > 0 {
			per := cpu / float64(r.Requests) * 1000
			r.CPUPer1k = &per
		}
		mi, _ := memStatus(t.p.PID)
		r.PeakRSSMiB = ptr(mib(mi.HWM))
		r.PeakIsLifetime = !t.peakReset
		anon, file := t.mem.finish()
		r.PeakAnonMiB, r.PeakFileMiB = ptr(mib(anon)), ptr(mib(file))
	}
	return r
}

// dist summarises durations, in milliseconds.
type dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

func distOf(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return dist{
		N:    len(s),
		P50:  ms(percentile(s, 50)),
		P90:  ms(percentile(s, 90)),
		P99:  ms(percentile(s, 99)),
		Mean: ms(sum / time.Duration(len(s))),
		Max:  ms(s[len(s)-1]),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted)) * p / 100))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }
