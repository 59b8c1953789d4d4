package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CPU profiles of sessctl from its admin listener (GET
// /debug/pprof/profile, admin token required), taken in a round of their
// own after the measured rounds of a workload, so that the figures in the
// report are not those of a profiled process.

// profileResult is one profile and its top functions.
type profileResult struct {
	Path     string  `json:"path"`
	Workload string  `json:"workload"`
	File     string  `json:"file"`
	Seconds  int     `json:"seconds"`
	RPS      float64 `json:"requests_per_s_while_profiled"`
	// Flat and Cum are `go tool pprof -top` by own time and by
	// cumulative time (the header and the first rows).
	Flat string `json:"top_flat,omitempty"`
	Cum  string `json:"top_cum,omitempty"`
	Err  string `json:"error,omitempty"`
}

// profileRound drives workload w through p for seconds (plus a second of
// margin on each side) while fetching a CPU profile of the same length
// into dir, then renders its top functions with goBin.
func profileRound(ctx context.Context, p *path, w workload, seconds, deltas int, dir, goBin string) profileResult {
	r := profileResult{Path: p.Name, Workload: w.String(), Seconds: seconds,
		File: filepath.Join(dir, p.Name+"-"+w.String()+".pprof")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.Err = err.Error()
		return r
	}
	load, stop := context.WithCancel(ctx)
	done := make(chan []sample, 1)
	go func() {
		var all []sample
		for load.Err() == nil {
			s, _ := runPhase(load, p, w, 500*time.Millisecond, deltas)
			all = append(all, s...)
		}
		done <- all
	}()
	time.Sleep(time.Second)
	start := time.Now()
	err := fetchProfile(ctx, p.adminURL, p.adminToken, seconds, r.File)
	took := time.Since(start)
	time.Sleep(time.Second)
	stop()
	samples := <-done
	ok := 0
	for _, s := range samples {
		if s.err == nil {
			ok++
		}
	}
	r.RPS = float64(ok) / (took + 2*time.Second).Seconds()
	if err != nil {
		r.Err = err.Error()
		return r
	}
	if r.Flat, err = pprofTop(goBin, r.File, false, 25); err != nil {
		r.Err = err.Error()
		return r
	}
	if r.Cum, err = pprofTop(goBin, r.File, true, 25); err != nil {
		r.Err = err.Error()
	}
	for _, t := range []struct{ suffix, text string }{{"-flat.txt", r.Flat}, {"-cum.txt", r.Cum}} {
		os.WriteFile(strings.TrimSuffix(r.File, ".pprof")+t.suffix, []byte(t.text), 0o644)
	}
	return r
}

// fetchProfile saves a CPU profile of seconds from the admin listener at
// adminURL to file.
func fetchProfile(ctx context.Context, adminURL, token string, seconds int, file string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", adminURL, seconds), nil)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("profile: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	return f.Close()
}

// pprofTop returns `go tool pprof -top` of a profile, sorted by flat or
// cumulative time, limited to n rows.
func pprofTop(goBin, file string, cum bool, n int) (string, error) {
	args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n)}
	if cum {
		args = append(args, "-cum")
	}
	out, err := exec.Command(goBin, append(args, file)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// The binary's name and build id say nothing to a reader.
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if !strings.HasPrefix(l, "File: ") && !strings.HasPrefix(l, "Build ID: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n"), nil
}
