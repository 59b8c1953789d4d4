// Command soak runs bin/sessctl under mixed traffic for a long while and
// prints its resident memory, open descriptors and goroutines over time:
// they must stay flat. It is `make soak` (30 minutes by default; set
// SOAK_DURATION for a shorter run); it is never part of `make test`.
//
// Traffic, all through the real binary to a local TLS stand-in for
// api.openai.com: JSON and streamed chat completions, slow readers of
// streamed answers, WebSocket sessions on /v1/responses, unauthenticated
// requests and refused CONNECTs (the refusal limiter's work), and a SIGHUP
// reload every -hup. Nothing leaves loopback.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.sessctl, "sessctl", "bin/sessctl", "the sessctl binary")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to run")
	flag.DurationVar(&o.sample, "sample", 0, "sampling interval (default: duration/30, at least 5s)")
	flag.DurationVar(&o.hup, "hup", 20*time.Second, "SIGHUP (rules and CA reload) interval")
	flag.StringVar(&o.work, "work", "", "work directory (default: a temporary one, removed after)")
	flag.Parse()
	if o.sample <= 0 {
		o.sample = max(o.duration/30, 5*time.Second)
	}
	if o.work == "" {
		dir, err := os.MkdirTemp("", "sessctl-soak-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		o.work = dir
	}
	o.work, _ = filepath.Abs(o.work)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

type options struct {
	sessctl  string
	duration time.Duration
	sample   time.Duration
	hup      time.Duration
	work     string
}
