package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTick = 100

// cpuTime returns the user+system CPU time the process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the contents
// of /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from its last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields", len(f)+2)
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: stime: %w", err)
	}
	// Ticks beyond what a Duration holds (292 years) are not real.
	const maxTicks = uint64(math.MaxInt64 / (int64(time.Second) / clockTick))
	if ut > maxTicks || st > maxTicks-ut {
		return 0, fmt.Errorf("proc stat: CPU ticks out of range")
	}
	return time.Duration(ut+st) * (time.Second / clockTick), nil
}

// memInfo is a process's resident memory, in bytes, from
// /proc/PID/status: the peak (VmHWM), the current total (VmRSS) and its
// parts: anonymous (heap, stacks), file-backed (mapped files, such as
// bbolt's mmap of the log) and shared memory (files on tmpfs).
type memInfo struct {
	HWM, RSS, Anon, File, Shmem int64
}

// memStatus reads the process's memInfo.
func memStatus(pid int) (memInfo, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	defer f.Close()
	return parseStatus(bufio.NewScanner(f))
}

// parseStatus reads memInfo from the contents of /proc/PID/status.
// VmHWM and VmRSS are required; the Rss* parts are optional (Linux 4.5+).
func parseStatus(sc *bufio.Scanner) (memInfo, error) {
	var m memInfo
	fields := map[string]*int64{"VmHWM": &m.HWM, "VmRSS": &m.RSS, "RssAnon": &m.Anon, "RssFile": &m.File, "RssShmem": &m.Shmem}
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		dst := fields[k]
		if !ok || dst == nil {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
		n, perr := strconv.ParseInt(num, 10, 64)
		if perr != nil || n < 0 || n > math.MaxInt64>>10 || unit != "kB" {
			return memInfo{}, fmt.Errorf("proc status: %s: %q", k, v)
		}
		*dst = n << 10
	}
	if err := sc.Err(); err != nil {
		return memInfo{}, err
	}
	if m.HWM == 0 || m.RSS == 0 {
		return memInfo{}, fmt.Errorf("proc status: no VmHWM/VmRSS")
	}
	return m, nil
}

// sampler polls a process's resident memory and keeps the peaks of its
// anonymous and file-backed (with shared) parts, which VmHWM does not
// break down.
type sampler struct {
	pid        int
	stop, done chan struct{}
	anon, file int64
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, err := memStatus(pid); err == nil {
				s.anon = max(s.anon, m.Anon)
				s.file = max(s.file, m.File+m.Shmem)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops the sampler and returns the peaks seen.
func (s *sampler) finish() (anon, file int64) {
	close(s.stop)
	<-s.done
	return s.anon, s.file
}

// resetPeak resets the process's VmHWM to its current RSS (Linux 4.0+,
// clear_refs value 5), so that the next reading is the peak of what
// follows.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// usage is what a process used over an interval.
type usage struct {
	CPU       time.Duration
	PeakBytes int64
	// PeakReset says whether the peak covers only the interval (VmHWM
	// was reset at its start) or the whole life of the process.
	PeakReset bool
}

// meter follows one process over an interval.
type meter struct {
	pid   int
	cpu0  time.Duration
	reset bool
}

func startMeter(pid int) *meter {
	if pid == 0 {
		return &meter{}
	}
	m := &meter{pid: pid, reset: resetPeak(pid) == nil}
	m.cpu0, _ = cpuTime(pid)
	return m
}

func (m *meter) stop() usage {
	if m.pid == 0 {
		return usage{}
	}
	cpu, _ := cpuTime(m.pid)
	mi, _ := memStatus(m.pid)
	return usage{CPU: cpu - m.cpu0, PeakBytes: mi.HWM, PeakReset: m.reset}
}
