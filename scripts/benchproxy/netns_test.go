package main

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildHarness builds this command into a temporary directory, for the
// tests that run its child modes (-standin, -bare-goproxy) as processes.
func buildHarness(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found: cannot build the harness for its child modes")
	}
	bin := filepath.Join(t.TempDir(), "benchproxy")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestStandInProcesses runs the stand-in as a process of its own, on
// loopback and (as root, with ip) in a network namespace of its own, and
// the bare goproxy as a process in front of it; the namespace and its
// veth pair must be gone after Close.
func TestStandInProcesses(t *testing.T) {
	bin := buildHarness(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	check := func(t *testing.T, o options, wantMode string) *standInProc {
		t.Helper()
		si, err := startStandIn(ctx, o, t.TempDir(), log)
		if err != nil {
			t.Fatal(err)
		}
		if si.Net.Mode != wantMode || si.PID() == 0 {
			si.Close()
			t.Fatalf("network %+v, pid %d; want mode %s", si.Net, si.PID(), wantMode)
		}
		direct := directPath(si.upstream)
		defer direct.Stop()
		if s := direct.do(ctx, chatBody(false), false, nil); s.err != nil || !s.gzip {
			si.Close()
			t.Fatalf("direct to the stand-in process: err %v, gzip %v", s.err, s.gzip)
		}
		bare, err := startBarePath(ctx, o, t.TempDir(), si.upstream)
		if err != nil {
			si.Close()
			t.Fatal(err)
		}
		s := bare.do(ctx, chatBody(true), true, deltaTexts(o.deltas))
		bare.Stop()
		if s.err != nil || s.events != o.deltas {
			si.Close()
			t.Fatalf("stream through the bare goproxy process: %+v", s)
		}
		return si
	}
	o := options{self: bin, deltas: 3, interval: time.Millisecond, netns: false}
	t.Run("loopback", func(t *testing.T) {
		si := check(t, o, "loopback")
		if si.Net.Reason != "-netns=false" || !strings.HasPrefix(si.Addr, "127.0.0.1:") {
			t.Errorf("network %+v", si.Net)
		}
		si.Close()
	})
	t.Run("netns", func(t *testing.T) {
		if why := netnsUnavailable(); why != nil {
			t.Skipf("network namespace: %v", why)
		}
		o.netns = true
		si := check(t, o, "netns")
		ns := si.ns
		if !strings.HasPrefix(si.Addr, ns.IP+":") || !strings.HasPrefix(ns.IP, "10.201.") {
			t.Errorf("stand-in at %s, namespace address %s", si.Addr, ns.IP)
		}
		if err := si.Close(); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), ns.Name) || linkExists(ns.HostDev) {
			t.Errorf("namespace %s or link %s left behind:\n%s", ns.Name, ns.HostDev, out)
		}
	})
}

// TestCleanStaleNetns leaves a namespace as a killed run would (named for
// a process that is gone) and checks that the next run removes it, and
// only it.
func TestCleanStaleNetns(t *testing.T) {
	if why := netnsUnavailable(); why != nil {
		t.Skipf("network namespace: %v", why)
	}
	// A pid that is not running: past the kernel's pid_max.
	dead := &netns{Name: netnsPrefix + "99999999", HostDev: "bpx99999999h"}
	if err := ipCmd("netns", "add", dead.Name); err != nil {
		t.Fatal(err)
	}
	alive := &netns{Name: netnsPrefix + "1"} // pid 1 always runs
	if err := ipCmd("netns", "add", alive.Name); err != nil {
		dead.Close()
		t.Fatal(err)
	}
	defer alive.Close()
	cleanStaleNetns(slog.New(slog.NewTextHandler(io.Discard, nil)))
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), dead.Name+" ") || strings.Contains(string(out), dead.Name+"\n") {
		dead.Close()
		t.Errorf("stale namespace %s not removed", dead.Name)
	}
	if !strings.Contains(string(out), alive.Name) {
		t.Errorf("namespace of a live process removed")
	}
}
