package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// logBuffer is a slog destination the test can read while the server
// writes to it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count reports how many log lines contain s.
func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig is the embedded defaults on fresh loopback ports and a fresh
// data directory, with a runner and an admin token configured so that
// nothing is created and printed on first run.
func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Runners = []config.Runner{{Name: "ci", TokenSHA256: identity.HashToken("runner-token")}}
	cfg.AdminTokens = []config.Runner{{Name: "admin", TokenSHA256: identity.HashToken("admin-token")}}
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start opens a server for cfg and serves it until the test ends; the
// test may set the server's intervals in tune before it serves.
func start(t *testing.T, cfg *config.Config, tune func(*server)) (*server, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	s, err := open(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if tune != nil {
		tune(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not return after its context ended")
		}
		s.close()
	})
	testutil.WaitFor(t, 0, "the server to log that it serves", func() bool { return logs.count("sessctl serving") == 1 })
	return s, logs
}

func ruleNames(s *server) string {
	var names []string
	for _, r := range s.rules.Load().Rules() {
		names = append(names, r.Name)
	}
	return strings.Join(names, ",")
}

func rulesYAML(name string) []byte {
	return []byte("rules:\n  - name: " + name + "\n    pattern: '" + name + "-[0-9]+'\n    action: mask\n")
}

// writeRules writes a rules file and gives it the modification time mt, so
// that the test decides whether the poller sees a change.
func writeRules(t *testing.T, path string, data []byte, mt time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func TestReloadRules(t *testing.T) {
	cfg := testConfig(t)
	cfg.RulesFile = filepath.Join(cfg.DataDir, "rules.yaml")
	mt := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeRules(t, cfg.RulesFile, rulesYAML("first"), mt)
	s, logs := start(t, cfg, func(s *server) { s.rulesPoll = 10 * time.Millisecond })
	if got := ruleNames(s); got != "first" {
		t.Fatalf("rules at start = %q, want first", got)
	}

	// A change of the file is picked up by the poller.
	mt = mt.Add(time.Minute)
	writeRules(t, cfg.RulesFile, rulesYAML("second"), mt)
	testutil.WaitFor(t, 0, "the changed rules file to be loaded", func() bool { return ruleNames(s) == "second" })

	// SIGHUP reloads the file even when its modification time is the same.
	writeRules(t, cfg.RulesFile, rulesYAML("third"), mt)
	s.hup <- syscall.SIGHUP
	testutil.WaitFor(t, 0, "SIGHUP to reload the rules", func() bool { return ruleNames(s) == "third" })
	testutil.WaitFor(t, 0, "SIGHUP to reload the CA", func() bool { return logs.count("CA reloaded") == 1 })

	// A bad file, on SIGHUP or when it changes, is rejected and the rules
	// in force stay.
	bad := []byte("rules:\n  - name: bad\n    pattern: '('\n    action: mask\n")
	writeRules(t, cfg.RulesFile, bad, mt)
	s.hup <- syscall.SIGHUP
	testutil.WaitFor(t, 0, "the bad rules file to be rejected on SIGHUP", func() bool { return logs.count("rules reload rejected") == 1 })
	if got := ruleNames(s); got != "third" {
		t.Fatalf("after a bad file on SIGHUP, rules = %q, want third", got)
	}
	mt = mt.Add(time.Minute)
	writeRules(t, cfg.RulesFile, bad, mt)
	testutil.WaitFor(t, 0, "the changed bad rules file to be rejected", func() bool { return logs.count("rules reload rejected") == 2 })
	if got := ruleNames(s); got != "third" {
		t.Fatalf("after a changed bad file, rules = %q, want third", got)
	}
	if !strings.Contains(logs.String(), `line 2: rule \"bad\"`) {
		t.Errorf("the rejection does not say what is wrong:\n%s", logs)
	}
}

// seed writes records into the log at cfg.DB before the server opens it.
func seed(t *testing.T, cfg *config.Config, recs ...*store.Record) {
	t.Helper()
	st, err := store.Open(cfg.DB, store.Options{SigningKeyFile: filepath.Join(cfg.DataDir, "log.key"), NoSync: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

func exchange(id string, end time.Time) *store.Record {
	return &store.Record{Kind: store.KindExchange, SessionID: id, Start: end.Add(-time.Second), End: end,
		Host: "api.openai.com", Outcome: store.OutcomeForwarded, Recording: store.RecordingFull,
		RequestBody: []byte("prompt of " + id), ResponseBody: []byte("answer of " + id)}
}

func TestPruneBodies(t *testing.T) {
	cfg := testConfig(t)
	now := time.Now()
	seed(t, cfg, exchange("old", now.Add(-72*time.Hour)), exchange("older-than-a-day", now.Add(-25*time.Hour)),
		exchange("recent", now.Add(-time.Hour)))
	cfg.Retention.Bodies = config.Duration(24 * time.Hour)
	s, _ := start(t, cfg, nil)

	bodies := func(id string) (req, resp []byte) {
		t.Helper()
		_, req, resp, err := s.store.Get(id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		return req, resp
	}
	testutil.WaitFor(t, 0, "the bodies older than retention.bodies to be pruned", func() bool {
		req1, resp1 := bodies("old")
		req2, resp2 := bodies("older-than-a-day")
		return req1 == nil && resp1 == nil && req2 == nil && resp2 == nil
	})
	if req, resp := bodies("recent"); string(req) != "prompt of recent" || string(resp) != "answer of recent" {
		t.Fatalf("recent bodies = %q, %q; want them kept", req, resp)
	}
	if rec, _, _, err := s.store.Get("old"); err != nil || rec.SessionID != "old" {
		t.Fatalf("the pruned record itself is gone: %+v, %v", rec, err)
	}
}

func TestPruneBodiesKeepForever(t *testing.T) {
	cfg := testConfig(t)
	seed(t, cfg, exchange("old", time.Now().Add(-365*24*time.Hour)))
	cfg.Retention.Bodies = 0
	s, err := open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.pruneBodies(context.Background()) // returns at once with retention 0
	if _, req, resp, err := s.store.Get("old"); err != nil || string(req) != "prompt of old" || string(resp) != "answer of old" {
		t.Fatalf("bodies with retention 0 = %q, %q, %v; want them kept", req, resp, err)
	}
}

func TestPostCheckpoint(t *testing.T) {
	type post struct {
		method, contentType string
		body                []byte
	}
	var mu sync.Mutex
	var posts []post
	refuse := false
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		posts = append(posts, post{r.Method, r.Header.Get("Content-Type"), body})
		if refuse {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer hook.Close()
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(posts)
	}

	cfg := testConfig(t)
	cfg.CheckpointURL = hook.URL + "/checkpoints"
	cfg.CheckpointEvery = 1
	s, logs := start(t, cfg, nil)
	testutil.WaitFor(t, 0, "the first checkpoint to be posted", func() bool { return received() >= 1 })
	latest, err := s.store.LatestCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	p := posts[len(posts)-1]
	mu.Unlock()
	if p.method != http.MethodPost || p.contentType != "text/plain; charset=utf-8" {
		t.Errorf("posted with %s, Content-Type %q", p.method, p.contentType)
	}
	if !bytes.Equal(p.body, latest) {
		t.Fatalf("posted body\n%s\nis not the latest signed checkpoint\n%s", p.body, latest)
	}
	cp, err := store.OpenCheckpoint(p.body, s.store.PublicKey())
	if err != nil {
		t.Fatalf("the posted checkpoint does not verify under the log's key: %v", err)
	}
	if cp.Origin != s.store.Origin() || cp.Size < 1 {
		t.Fatalf("posted checkpoint %+v, want origin %s", cp, s.store.Origin())
	}

	// Each new checkpoint is posted; a refusal is logged and the log goes on.
	mu.Lock()
	refuse = true
	mu.Unlock()
	n := received()
	if _, err := s.store.Append(context.Background(), exchange("next", time.Now())); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 0, "the next checkpoint to be posted", func() bool { return received() > n })
	testutil.WaitFor(t, 0, "the refusal to be logged", func() bool { return logs.count("posting checkpoint refused") >= 1 })
	mu.Lock()
	p = posts[len(posts)-1]
	mu.Unlock()
	cp, err = store.OpenCheckpoint(p.body, s.store.PublicKey())
	if err != nil || cp.Size < 2 {
		t.Fatalf("second posted checkpoint %+v, %v; want a larger signed checkpoint", cp, err)
	}
	if err := s.store.Healthy(); err != nil {
		t.Errorf("a refused checkpoint post made the store unhealthy: %v", err)
	}
}

func TestRunRefusesBadSetup(t *testing.T) {
	tests := []struct {
		name string
		edit func(*config.Config)
		want string
	}{
		{"policy key not among upstream_keys", func(c *config.Config) {
			c.Policies = []config.Policy{{Name: "p", Key: "other"}}
		}, `key "other" is not among upstream_keys`},
		{"listen address taken", nil, "listen:"},
		{"missing rules file", func(c *config.Config) { c.RulesFile = filepath.Join(c.DataDir, "none.yaml") }, "none.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tt.edit != nil {
				tt.edit(cfg)
			} else {
				s, _ := start(t, testConfig(t), nil)
				cfg.Listen = s.proxyLn.Addr().String()
			}
			err := Run(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
			// What open made is closed again: the log opens.
			st, err := store.Open(cfg.DB, store.Options{SigningKeyFile: filepath.Join(cfg.DataDir, "log.key"), NoSync: true,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatalf("the log is still held after Run failed: %v", err)
			}
			st.Close()
		})
	}
}
