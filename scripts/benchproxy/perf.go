package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// perfRun is perf(1) watching one process: on-CPU stack samples (perf
// record) and a per-thread syscall summary with times (perf trace -s),
// which shows where the process waits rather than computes.
type perfRun struct {
	record, trace *exec.Cmd
	base          string
}

// startPerf samples the process's stacks (-g) at 999 Hz into base.data
// and traces its syscalls into base-syscalls.txt; finish writes flat and
// cumulative reports to base.txt and base-children.txt.
func startPerf(ctx context.Context, pid int, base string) (*perfRun, error) {
	bin, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("perf not installed (apt-get install -y linux-perf)")
	}
	p := &perfRun{base: base}
	p.record = exec.CommandContext(ctx, bin, "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", base+".data")
	if err := p.record.Start(); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	p.trace = exec.CommandContext(ctx, bin, "trace", "-s", "-p", strconv.Itoa(pid), "-o", base+"-syscalls.txt")
	if err := p.trace.Start(); err != nil {
		p.trace = nil
	}
	return p, nil
}

func (p *perfRun) finish() error {
	for _, c := range []*exec.Cmd{p.record, p.trace} {
		if c != nil {
			c.Process.Signal(syscall.SIGINT)
			c.Wait()
		}
	}
	for _, rep := range []struct {
		file string
		args []string
	}{
		{p.base + ".txt", []string{"--no-children", "--percent-limit", "0.7"}},
		{p.base + "-children.txt", []string{"--children", "--percent-limit", "3"}},
	} {
		f, err := os.Create(rep.file)
		if err != nil {
			return err
		}
		args := append([]string{"report", "-i", p.base + ".data", "--stdio", "-g", "none", "--sort", "symbol"}, rep.args...)
		cmd := exec.Command("perf", args...)
		cmd.Stdout = f
		err = cmd.Run()
		f.Close()
		if err != nil {
			return fmt.Errorf("perf report: %w", err)
		}
	}
	return nil
}
