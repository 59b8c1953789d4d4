package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// network says where the stand-in ran, for the report.
type network struct {
	// Mode is "netns" (its own network namespace, over a veth pair) or
	// "loopback" (127.0.0.1, when namespaces are unavailable).
	Mode string `json:"mode"`
	// Reason is why loopback was used.
	Reason    string `json:"reason,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Addr      string `json:"upstream_addr"`
}

// standInProc is the stand-in process and, when it runs in one, its namespace.
type standInProc struct {
	*upstream
	ns  *netns
	Net network
}

// Close stops the stand-in, then removes its namespace.
func (s *standInProc) Close() error {
	s.upstream.Close()
	if s.ns != nil {
		return s.ns.Close()
	}
	return nil
}

// startStandIn runs the stand-in as a process of its own (this binary
// with -standin), in a network namespace created for it when useNetns is
// set and this is possible, else on loopback with a message saying why.
// Its raw outputs go to dir.
func startStandIn(ctx context.Context, o options, dir string, log *slog.Logger) (*standInProc, error) {
	self, err := o.executable()
	if err != nil {
		return nil, fmt.Errorf("stand-in: %w", err)
	}
	s := &standInProc{Net: network{Mode: "loopback"}}
	listen := "127.0.0.1:0"
	if !o.netns {
		s.Net.Reason = "-netns=false"
	} else if why := netnsUnavailable(); why != nil {
		s.Net.Reason = why.Error()
	} else {
		cleanStaleNetns(log)
		ns, err := setupNetns()
		if err != nil {
			s.Net.Reason = err.Error()
		} else {
			s.ns, s.Net.Mode, s.Net.Namespace = ns, "netns", ns.Name
			listen = net.JoinHostPort(ns.IP, "8443")
		}
	}
	if s.Net.Mode == "loopback" {
		fmt.Fprintf(os.Stderr, "benchproxy: no network namespace (%s): the stand-in runs on loopback, which the issue's figures did not use.\n", s.Net.Reason)
	}
	args := []string{"-standin", "-standin-listen", listen, "-work", dir,
		"-deltas", strconv.Itoa(o.deltas), "-interval", o.interval.String()}
	var cmd *exec.Cmd
	if s.ns != nil {
		cmd = s.ns.Command(self, args...)
	} else {
		cmd = exec.Command(self, args...)
	}
	cmd.Env = cleanEnv()
	proc, kv, err := startAnnouncing(ctx, cmd, filepath.Join(dir, "upstream", "standin.log"), 30*time.Second)
	if err != nil {
		if s.ns != nil {
			s.ns.Close()
		}
		return nil, fmt.Errorf("stand-in: %w", err)
	}
	caFile := kv["upstream_ca_file"]
	pool, err := loadPool(caFile)
	if err != nil {
		proc.Stop()
		if s.ns != nil {
			s.ns.Close()
		}
		return nil, fmt.Errorf("stand-in: %w", err)
	}
	s.upstream = &upstream{Addr: kv["upstream_addr"], CAFile: caFile, CAs: pool, proc: proc}
	s.Net.Addr = s.Addr
	return s, nil
}

// serveStandIn is the -standin mode: the stand-in alone, in this process,
// until interrupted. It prints upstream_addr, upstream_ca_file and
// real_key on one line once it listens.
func serveStandIn(ctx context.Context, o options) error {
	work, err := filepath.Abs(o.work)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	up, err := startUpstream(filepath.Join(work, "upstream"), o.standInListen, o.deltas, o.interval)
	if err != nil {
		return err
	}
	defer up.Close()
	fmt.Printf("upstream_addr=%s upstream_ca_file=%s real_key=%s\n", up.Addr, up.CAFile, realKey)
	<-ctx.Done()
	return nil
}
