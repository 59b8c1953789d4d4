package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

// benchAnswer is a non-streamed chat completion of typical size (the one
// scripts/benchproxy's stand-in sends).
const benchAnswer = `{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"The build failed because the integration test expects the fixture file testdata/config.yaml, which the refactor moved to testdata/configs/default.yaml. Update the path in TestLoadConfig, or restore the old location with a symlink.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":412,"completion_tokens":52,"total_tokens":464,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_06737a9306"}`

// benchRequest is a chat completion request of about 1.6 KB with no
// secret in it (the one scripts/benchproxy sends).
func benchRequest() []byte {
	user := "The CI job failed. Here is the end of the log:\n" + strings.Repeat(
		"--- FAIL: TestLoadConfig (0.00s)\n    config_test.go:41: open testdata/config.yaml: no such file or directory\n", 12) +
		"What went wrong and how do I fix it?"
	b, _ := json.Marshal(map[string]any{
		"model": "gpt-4o-mini",
		"messages": []map[string]string{
			{"role": "system", "content": "You are a helpful assistant that explains CI failures concisely."},
			{"role": "user", "content": user},
		},
		"temperature": 0.2,
		"stream":      false,
	})
	return b
}

// benchEnv is a whole sessctl in-process for benchmarks: real CA, real
// bbolt store, the real proxy on loopback and a TLS stand-in for
// api.openai.com that answers every request with benchAnswer. Unlike env,
// it keeps nothing of what the stand-in receives.
type benchEnv struct {
	client *http.Client
	// newClient returns a client that opens a new connection (CONNECT
	// and TLS handshake) for every request, resuming TLS sessions if
	// resume is set.
	newClient func(resume bool) *http.Client
	store     *store.Store
	proxy     *Server
}

// newBenchEnv starts a benchEnv. The log is put on /dev/shm when there is
// one, so that what is measured is sessctl's CPU, not the disk's fsync.
func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	dir := b.TempDir()
	logDir := dir
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "sessctl-bench-")
		if err == nil {
			logDir = d
			b.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	upCADir := filepath.Join(dir, "upstream-ca")
	if err := ca.Init(upCADir, ca.InitOptions{Hosts: testHosts}); err != nil {
		b.Fatal(err)
	}
	upCA, err := ca.Load(upCADir, ca.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	// The stand-in offers HTTP/2, as api.openai.com does.
	ul, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: upCA.GetCertificate, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		b.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Authorization") != "Bearer "+testRealKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(benchAnswer)))
		io.WriteString(w, benchAnswer)
	}), ErrorLog: nil}
	up.Protocols = new(http.Protocols)
	up.Protocols.SetHTTP1(true)
	up.Protocols.SetHTTP2(true)
	go up.Serve(ul)
	b.Cleanup(func() { up.Close() })

	caDir := filepath.Join(dir, "ca")
	if err := ca.Init(caDir, ca.InitOptions{Hosts: testHosts}); err != nil {
		b.Fatal(err)
	}
	authority, err := ca.Load(caDir, ca.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(filepath.Join(logDir, "sessions.db"), store.Options{SigningKeyFile: filepath.Join(dir, "log.key"), Logger: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	auth, err := identity.New(context.Background(), identity.Config{
		Runners: []identity.Runner{{Name: "ci-1", TokenSHA256: identity.HashToken(testRunnerToken)}},
	})
	if err != nil {
		b.Fatal(err)
	}
	tr, dial, upTLS, err := NewTransport(UpstreamOptions{CAFile: filepath.Join(upCADir, "ca.crt"), Addr: ul.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	rs := rules.Default()
	px, err := New(Options{
		Intercept: []string{"api.openai.com"},
		Certs:     authority, Store: st, Auth: auth,
		Rules:     func() *rules.Set { return rs },
		Approvals: approval.NewQueue(0),
		Keys:      provider.Keys{provider.OpenAI: {"": testRealKey}},
		Upstream:  tr, UpstreamDial: dial, UpstreamTLS: upTLS,
		Logger: quietLog(),
	})
	if err != nil {
		b.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { px.ServeExplicit(ctx, pl); close(done) }()
	b.Cleanup(func() {
		cancel()
		<-done
		px.Close()
		tr.CloseIdleConnections()
		st.Close()
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(authority.CertPEM())
	client := &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyURL(&url.URL{Scheme: "http", Host: pl.Addr().String()}),
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConnsPerHost: 64,
	}}
	b.Cleanup(client.CloseIdleConnections)
	newClient := func(resume bool) *http.Client {
		cfg := &tls.Config{RootCAs: pool}
		if resume {
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
		}
		return &http.Client{Transport: &http.Transport{
			Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: pl.Addr().String()}),
			TLSClientConfig:   cfg,
			DisableKeepAlives: true,
		}}
	}
	return &benchEnv{client: client, newClient: newClient, store: st, proxy: px}
}

// chat sends one non-streamed chat completion and reads the answer.
func (e *benchEnv) chat(body []byte) error { return e.chatWith(e.client, body) }

// chatWith is chat with another client.
func (e *benchEnv) chatWith(c *http.Client, body []byte) error {
	req, err := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || len(got) != len(benchAnswer) {
		return &benchError{resp.StatusCode, got}
	}
	return nil
}

type benchError struct {
	status int
	body   []byte
}

func (e *benchError) Error() string {
	return "status " + strconv.Itoa(e.status) + ": " + string(e.body[:min(len(e.body), 300)])
}

// reportCPU reports the process's CPU time (user and system) per
// operation as cpu-ns/op: on a machine shared with other work, a steadier
// figure than ns/op. Call the function it returns when the loop is done.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// processCPU returns the CPU time the process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkExchange is one non-streamed chat completion (1.6 KB prompt,
// 0.9 KB answer) through the real proxy (CONNECT, TLS both sides, rules,
// credential swap, record in a real bbolt log on /dev/shm) to a local TLS
// stand-in offering HTTP/2, on kept-alive connections: one at a time (c1,
// ns/op is the whole exchange's latency) and 16 at once (c16). allocs/op
// B/op and cpu-ns/op count the whole process: the Go client and the
// stand-in too. newconn-full and newconn-resumed open a new connection
// for each exchange (CONNECT, TLS handshake with the runner), without and
// with a TLS session to resume.
func BenchmarkExchange(b *testing.B) {
	e := newBenchEnv(b)
	body := benchRequest()
	if err := e.chat(body); err != nil {
		b.Fatal(err)
	}
	b.Run("c1", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			if err := e.chat(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, resume := range []bool{false, true} {
		name := "newconn-full"
		if resume {
			name = "newconn-resumed"
		}
		b.Run(name, func(b *testing.B) {
			c := e.newClient(resume)
			if err := e.chatWith(c, body); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if err := e.chatWith(c, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("c16", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		b.SetParallelism(max(1, 16/max(1, runtimeProcs())))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := e.chat(body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
