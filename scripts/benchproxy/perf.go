package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// perfRun is perf(1) recording one process.
type perfRun struct {
	cmd  *exec.Cmd
	data string
	out  string
}

// startPerf samples the process's stacks (-g) at 999 Hz into base.data;
// finish writes a flat report to base.txt.
func startPerf(ctx context.Context, pid int, base string) (*perfRun, error) {
	bin, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("perf not installed (apt-get install -y linux-perf)")
	}
	p := &perfRun{data: base + ".data", out: base + ".txt"}
	p.cmd = exec.CommandContext(ctx, bin, "record", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", p.data)
	p.cmd.Stdout, p.cmd.Stderr = nil, nil
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	return p, nil
}

func (p *perfRun) finish() error {
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	f, err := os.Create(p.out)
	if err != nil {
		return err
	}
	defer f.Close()
	rep := exec.Command("perf", "report", "-i", p.data, "--stdio", "--no-children", "--percent-limit", "0.7", "-g", "none", "--sort", "symbol")
	rep.Stdout, rep.Stderr = f, f
	if err := rep.Run(); err != nil {
		return fmt.Errorf("perf report: %w", err)
	}
	return nil
}
