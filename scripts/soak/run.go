package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// counters of the traffic generators.
type counters struct {
	ok, failed, refused, ws, hups atomic.Int64
}

// run starts the stand-in and sessctl, drives the traffic for o.duration
// while sampling, and reports whether the figures stayed flat.
func run(ctx context.Context, o options) (bool, error) {
	upAddr, upCA, stopUp, err := startUpstream(o.work)
	if err != nil {
		return false, fmt.Errorf("upstream: %w", err)
	}
	defer stopUp()
	listen, admin := freePort(), freePort()
	data := filepath.Join(o.work, "data")
	cmd := exec.Command(o.sessctl, "serve", "--data_dir", data, "--listen", listen, "--admin_listen", admin,
		"--upstream_addr", upAddr, "--upstream_ca_file", upCA)
	cmd.Env = append(os.Environ(), "OPENAI_API_KEY="+realKey, "HTTPS_PROXY=", "https_proxy=")
	logf, err := os.Create(filepath.Join(o.work, "serve.log"))
	if err != nil {
		return false, err
	}
	defer logf.Close()
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start %s: %w", o.sessctl, err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	token := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if tok, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "export OPENAI_API_KEY="); ok {
				select {
				case token <- tok:
				default:
				}
			}
		}
	}()
	var runnerToken string
	select {
	case runnerToken = <-token:
	case <-time.After(60 * time.Second):
		return false, fmt.Errorf("sessctl printed no runner token (log: %s)", logf.Name())
	}
	if err := waitDial(listen, 30*time.Second); err != nil {
		return false, err
	}
	caPEM, err := os.ReadFile(filepath.Join(data, "ca", "ca.crt"))
	if err != nil {
		return false, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	proxyURL := &url.URL{Scheme: "http", Host: listen}
	newClient := func() *http.Client {
		tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: roots},
			MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
		return &http.Client{Transport: tr, Timeout: time.Minute}
	}

	fmt.Printf("soak: sessctl pid %d, %v of mixed traffic, sampling every %v, SIGHUP every %v\n", cmd.Process.Pid, o.duration, o.sample, o.hup)
	fmt.Printf("%8s %10s %6s %11s %9s %8s %8s %6s %5s\n", "elapsed", "rss_MiB", "fds", "goroutines", "ok", "failed", "refused", "ws", "hups")
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var c counters
	var wg sync.WaitGroup
	worker := func(every time.Duration, fn func(*http.Client) error) {
		wg.Go(func() {
			hc := newClient()
			defer hc.CloseIdleConnections()
			for ctx.Err() == nil {
				if err := fn(hc); err != nil && ctx.Err() == nil {
					c.failed.Add(1)
					if c.failed.Load() <= 5 {
						fmt.Fprintln(os.Stderr, "soak: request failed:", err)
					}
				}
				sleep(ctx, every)
			}
		})
	}
	chat := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello, soak"}]}`
	stream := `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hello, soak"}]}`
	for range 4 {
		worker(10*time.Millisecond, func(hc *http.Client) error { return post(ctx, hc, runnerToken, chat, 0, &c) })
	}
	for range 2 {
		worker(10*time.Millisecond, func(hc *http.Client) error { return post(ctx, hc, runnerToken, stream, 0, &c) })
	}
	for range 2 { // slow readers: 64 bytes every 20 ms
		worker(50*time.Millisecond, func(hc *http.Client) error { return post(ctx, hc, runnerToken, stream, 20*time.Millisecond, &c) })
	}
	worker(20*time.Millisecond, func(hc *http.Client) error { return wsSession(ctx, hc, runnerToken, &c) })
	worker(50*time.Millisecond, func(hc *http.Client) error { // unauthenticated
		return post(ctx, hc, "sct_not-a-runner", chat, 0, &c)
	})
	worker(50*time.Millisecond, func(*http.Client) error { return refusedConnect(listen, &c) })
	wg.Go(func() {
		for ctx.Err() == nil {
			sleep(ctx, o.hup)
			if ctx.Err() == nil && cmd.Process.Signal(syscall.SIGHUP) == nil {
				c.hups.Add(1)
			}
		}
	})

	var samples []sample
	start := time.Now()
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		s, err := measure(cmd.Process.Pid, admin)
		if err != nil {
			return false, err
		}
		s.elapsed = time.Since(start)
		samples = append(samples, s)
		fmt.Printf("%8s %10.1f %6d %11d %9d %8d %8d %6d %5d\n", s.elapsed.Round(time.Second), float64(s.rss)/(1<<20), s.fds, s.goroutines,
			c.ok.Load(), c.failed.Load(), c.refused.Load(), c.ws.Load(), c.hups.Load())
	}
	wg.Wait()
	return report(samples, &c), nil
}

// post sends one chat completion and reads the answer (slowly if pause is
// set: 64 bytes, then pause).
func post(ctx context.Context, hc *http.Client, token, body string, pause time.Duration, c *counters) error {
	req, err := http.NewRequestWithContext(ctx, "POST", "https://"+apiHost+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	for {
		_, err := resp.Body.Read(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if pause > 0 {
			sleep(ctx, pause)
		}
	}
	switch {
	case resp.StatusCode == 200:
		c.ok.Add(1)
	case resp.StatusCode == 401 && !strings.HasPrefix(token, "sct_not"):
		return fmt.Errorf("runner refused: %s", resp.Status)
	case resp.StatusCode == 401:
		c.refused.Add(1)
	default:
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// wsSession opens a WebSocket through sessctl, runs three responses and
// closes it.
func wsSession(ctx context.Context, hc *http.Client, token string, c *counters) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, "wss://"+apiHost+"/v1/responses", &websocket.DialOptions{
		HTTPClient: hc, HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	defer conn.CloseNow()
	for range 3 {
		if err := conn.Write(dctx, websocket.MessageText, []byte(`{"type":"response.create","response":{"model":"gpt-4o-mini","input":"hello"}}`)); err != nil {
			return fmt.Errorf("websocket write: %w", err)
		}
		for {
			_, msg, err := conn.Read(dctx)
			if err != nil {
				return fmt.Errorf("websocket read: %w", err)
			}
			if strings.Contains(string(msg), `"response.completed"`) {
				break
			}
		}
	}
	conn.Close(websocket.StatusNormalClosure, "")
	c.ws.Add(1)
	return nil
}

// refusedConnect asks for a tunnel to a host sessctl refuses.
func refusedConnect(listen string, c *counters) error {
	conn, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "CONNECT evil-%d.example:443 HTTP/1.1\r\nHost: x\r\n\r\n", time.Now().UnixNano()%1000)
	b, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(b), "HTTP/1.1 403") {
		return fmt.Errorf("refused CONNECT answered %.30q", b)
	}
	c.refused.Add(1)
	return nil
}

// sample is one measure of the sessctl process.
type sample struct {
	elapsed         time.Duration
	rss             int64
	fds, goroutines int
}

func measure(pid int, admin string) (sample, error) {
	var s sample
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("sessctl is gone: %w", err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			s.rss = kb << 10
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			s.goroutines, _ = strconv.Atoi(v)
		}
	}
	return s, nil
}

// report prints the figures of the warm first third against the last
// third and says whether they stayed flat: descriptors and goroutines
// within 25% (+10), memory within 50% (+16 MiB).
func report(samples []sample, c *counters) bool {
	if len(samples) < 3 {
		fmt.Println("soak: too few samples to judge")
		return false
	}
	third := len(samples) / 3
	peak := func(ss []sample) sample {
		var m sample
		for _, s := range ss {
			m.rss, m.fds, m.goroutines = max(m.rss, s.rss), max(m.fds, s.fds), max(m.goroutines, s.goroutines)
		}
		return m
	}
	early, late := peak(samples[third:2*third]), peak(samples[2*third:])
	flat := true
	check := func(name string, a, b, slack float64, factor float64) {
		ok := b <= a*factor+slack
		verdict := "flat"
		if !ok {
			verdict, flat = "GROWING", false
		}
		fmt.Printf("soak: %-11s middle third peak %10.1f, last third peak %10.1f: %s\n", name, a, b, verdict)
	}
	check("rss_MiB", float64(early.rss)/(1<<20), float64(late.rss)/(1<<20), 16, 1.5)
	check("fds", float64(early.fds), float64(late.fds), 10, 1.25)
	check("goroutines", float64(early.goroutines), float64(late.goroutines), 10, 1.25)
	fmt.Printf("soak: %d exchanges ok, %d failed, %d refusals, %d WebSocket sessions, %d SIGHUP reloads\n",
		c.ok.Load(), c.failed.Load(), c.refused.Load(), c.ws.Load(), c.hups.Load())
	if c.failed.Load() > 0 {
		flat = false
	}
	return flat
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitDial(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sessctl does not listen on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
