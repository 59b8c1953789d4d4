package main

import (
	"fmt"
)

// goalLogRecords is the log size issue 14's memory goal is stated for.
const goalLogRecords = 1_000_000

// judge adds one target per goal of issue 14, judged on the sessctl path
// (log on disk, fsync on). A target whose paths were not measured, or that
// this benchmark cannot measure, has Met nil.
func (r *report) judge() {
	s, m, d := "sessctl", "mitmproxy", "direct"
	add := func(name, goal string, need []*result, measured func() (string, bool)) {
		t := target{Name: name, Goal: goal, Measured: "not measured"}
		for _, n := range need {
			if n == nil || n.Requests == 0 {
				r.Targets = append(r.Targets, t)
				return
			}
		}
		var met bool
		t.Measured, met = measured()
		t.Met = &met
		r.Targets = append(r.Targets, t)
	}

	sc1, mc1, dc1 := r.find(s, "chat-c1"), r.find(m, "chat-c1"), r.find(d, "chat-c1")
	add("added latency at c=1", "sessctl p50 − direct p50 ≤ 1.2 ms, non-streaming, concurrency 1, log on disk with fsync", []*result{sc1, dc1}, func() (string, bool) {
		a := sc1.Latency.P50 - dc1.Latency.P50
		return fmt.Sprintf("%+.2f ms (%.2f vs %.2f)", a, sc1.Latency.P50, dc1.Latency.P50), a <= 1.2
	})
	add("added latency vs mitmproxy at c=1", "sessctl's added p50 ≤ ½ mitmproxy's, same run", []*result{sc1, mc1, dc1}, func() (string, bool) {
		a, b := sc1.Latency.P50-dc1.Latency.P50, mc1.Latency.P50-dc1.Latency.P50
		return fmt.Sprintf("%+.2f vs %+.2f ms = %.2f×", a, b, a/b), a <= b/2
	})

	sc16, mc16, dc16 := r.find(s, "chat-c16"), r.find(m, "chat-c16"), r.find(d, "chat-c16")
	add("throughput vs direct at c=16", "sessctl ≥ 0.8× direct requests/s, non-streaming, concurrency 16", []*result{sc16, dc16}, func() (string, bool) {
		q := sc16.RPS / dc16.RPS
		return fmt.Sprintf("%.0f vs %.0f req/s = %.3f×", sc16.RPS, dc16.RPS, q), q >= 0.8
	})
	add("throughput vs mitmproxy at c=16", "sessctl ≥ 2× mitmproxy requests/s, non-streaming, concurrency 16", []*result{sc16, mc16}, func() (string, bool) {
		q := sc16.RPS / mc16.RPS
		return fmt.Sprintf("%.0f vs %.0f req/s = %.3f×", sc16.RPS, mc16.RPS, q), q >= 2
	})

	ss1, ds1 := r.find(s, "stream-c1"), r.find(d, "stream-c1")
	add("time to first delta at c=1", "sessctl TTFD p50 − direct ≤ 1 ms (first event carrying text), concurrency 1", []*result{ss1, ds1}, func() (string, bool) {
		a := ss1.TTFD.P50 - ds1.TTFD.P50
		return fmt.Sprintf("%+.2f ms (%.2f vs %.2f)", a, ss1.TTFD.P50, ds1.TTFD.P50), a <= 1
	})
	ss16, ds16 := r.find(s, "stream-c16"), r.find(d, "stream-c16")
	var streams []*result
	for _, x := range []*result{ss1, ss16} {
		if x != nil && x.Requests > 0 {
			streams = append(streams, x)
		}
	}
	if len(streams) == 0 {
		streams = []*result{nil}
	}
	add("deltas held back", "at most 1 delta in 20 (5 %) completed only by a later event, built-in rules, ordinary English text", streams, func() (string, bool) {
		held, text := 0.0, ""
		for _, x := range streams {
			f := deref(x.SplitDeltas)
			held = max(held, f)
			if text != "" {
				text += ", "
			}
			text += fmt.Sprintf("%s %.1f %%", x.Workload, 100*f)
		}
		return text, held <= 0.05
	})
	for _, c := range [][2]*result{{ss1, ds1}, {ss16, ds16}} {
		st, dt := c[0], c[1]
		wl := "stream-c1"
		if st != nil {
			wl = st.Workload
		} else if dt != nil {
			wl = dt.Workload
		}
		add("inter-delta gap, "+wl, "sessctl gap p99 − direct gap p99 ≤ 5 ms", []*result{st, dt}, func() (string, bool) {
			a := st.Gap.P99 - dt.Gap.P99
			return fmt.Sprintf("%+.2f ms (%.2f vs %.2f)", a, st.Gap.P99, dt.Gap.P99), a <= 5
		})
	}

	sst16 := r.find(s, "stream-c16")
	t := target{Name: "RSS at c=16, 1M-record log", Goal: "sessctl VmHWM ≤ 64 MiB at concurrency 16 with a log of 1,000,000 records (anonymous part reported apart)", Measured: "not measured"}
	if sc16 != nil && sc16.PeakRSSMiB != nil {
		peak, anon, parts := *sc16.PeakRSSMiB, deref(sc16.PeakAnonMiB), fmt.Sprintf("chat %.1f", *sc16.PeakRSSMiB)
		if sst16 != nil && sst16.PeakRSSMiB != nil {
			peak, anon = max(peak, *sst16.PeakRSSMiB), max(anon, deref(sst16.PeakAnonMiB))
			parts += fmt.Sprintf(", stream %.1f", *sst16.PeakRSSMiB)
		}
		records := 0
		if r.Prefill != nil {
			records = r.Prefill.Records
		}
		t.Measured = fmt.Sprintf("VmHWM %.1f MiB (%s; anonymous at most %.1f) with %d records prefilled", peak, parts, anon, records)
		if records >= goalLogRecords {
			met := peak <= 64
			t.Met = &met
		} else {
			t.Measured += ": not judged, the goal is for a log of 1,000,000"
		}
	}
	r.Targets = append(r.Targets, t)
	r.Targets = append(r.Targets, target{Name: "no guarantee weakened",
		Goal:     "record durable before the end of the answer; a trace of every forwarded exchange after a crash; fail closed",
		Measured: "not measured by this benchmark (the store's and proxy's tests check it); sessctl verify on the run's log: " + orNone(r.Verify)})
}
