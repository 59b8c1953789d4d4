package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// child is a process the harness runs (the stand-in, the bare goproxy,
// a proxy), with its output in a log file.
type child struct {
	cmd     *exec.Cmd
	logFile *os.File
	// exited is closed when the process has exited.
	exited chan struct{}
}

// PID is the process's id.
func (c *child) PID() int { return c.cmd.Process.Pid }

// startChild starts cmd with stderr (and, unless stdout is set, stdout)
// going to logPath.
func startChild(cmd *exec.Cmd, logPath string, stdout io.Writer) (*child, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = f
	cmd.Stdout = f
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	c := &child{cmd: cmd, logFile: f, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// startAnnouncing starts cmd, which prints one line of key=value pairs on
// stdout once it is ready, and returns those pairs. The rest of its
// stdout goes to the log too.
func startAnnouncing(ctx context.Context, cmd *exec.Cmd, logPath string, limit time.Duration) (*child, map[string]string, error) {
	pr, pw := io.Pipe()
	c, err := startChild(cmd, logPath, pw)
	if err != nil {
		return nil, nil, err
	}
	go func() {
		<-c.exited
		pw.Close()
	}()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		first := true
		for sc.Scan() {
			if first {
				line <- sc.Text()
				first = false
			}
			fmt.Fprintln(c.logFile, sc.Text())
		}
		if first {
			close(line)
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			c.Stop()
			return nil, nil, fmt.Errorf("%s exited before it was ready (log %s)", filepath.Base(cmd.Path), logPath)
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(l) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		return c, kv, nil
	case <-time.After(limit):
		c.Stop()
		return nil, nil, fmt.Errorf("%s not ready after %s (log %s)", filepath.Base(cmd.Path), limit, logPath)
	case <-ctx.Done():
		c.Stop()
		return nil, nil, ctx.Err()
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after 15 s) and closes
// its log.
func (c *child) Stop() {
	if c == nil {
		return
	}
	select {
	case <-c.exited:
	default:
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(15 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
		}
	}
	c.logFile.Close()
}

// running reports whether the process has not exited.
func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}
