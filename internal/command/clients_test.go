package command

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// The test in this file is what a new user does: start `sessctl serve` on
// embedded defaults (relative data directory, ports picked by the kernel),
// paste the lines it prints on first run into a shell in another
// directory, and call the API with each client a runner uses. Nothing but
// those lines (and PATH, HOME) is in the clients' environment, so the
// README cannot drift from what works.

const upstreamAnswer = "hello from upstream"

// upstreamHit is one request the stand-in for api.openai.com received.
type upstreamHit struct {
	method, path, userAgent string
	realKey                 bool // Authorization carried the real key
	websocket               bool
}

// clientsUpstream stands in for api.openai.com for every client: chat
// completions (JSON), the Responses API over HTTP (SSE) and over WebSocket
// (the Codex CLI's transports). It answers only requests that carry the
// real key, and remembers every request.
type clientsUpstream struct {
	addr, caFile string
	mu           sync.Mutex
	hits         []upstreamHit
}

func newClientsUpstream(t *testing.T) *clientsUpstream {
	t.Helper()
	dir := t.TempDir()
	if err := ca.Init(dir, ca.InitOptions{Hosts: []string{"api.openai.com"}}); err != nil {
		t.Fatal(err)
	}
	auth, err := ca.Load(dir, ca.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: auth.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	u := &clientsUpstream{addr: l.Addr().String(), caFile: filepath.Join(dir, "ca.crt")}
	srv := &http.Server{Handler: u}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *clientsUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hit := upstreamHit{
		method: r.Method, path: r.URL.Path, userAgent: r.UserAgent(),
		realKey:   r.Header.Get("Authorization") == "Bearer "+realKey,
		websocket: strings.EqualFold(r.Header.Get("Upgrade"), "websocket"),
	}
	u.mu.Lock()
	u.hits = append(u.hits, hit)
	u.mu.Unlock()
	if !hit.realKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"message":"wrong key","type":"invalid_request_error"}}`)
		return
	}
	switch {
	case r.URL.Path == "/v1/chat/completions" && r.Method == http.MethodPost:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini",`+
			`"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"`+upstreamAnswer+`"}}],`+
			`"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}`)
	case r.URL.Path == "/v1/responses" && hit.websocket:
		u.responsesWebSocket(w, r)
	case r.URL.Path == "/v1/responses" && r.Method == http.MethodPost:
		// The Codex CLI falls back to this when its WebSocket fails.
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range responseEvents("resp_http") {
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", eventType(ev), ev)
			w.(http.Flusher).Flush()
		}
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"message":"not served by the test upstream","type":"invalid_request_error"}}`)
	}
}

// responsesWebSocket answers each response.create on a Responses API
// WebSocket with the events of one short answer.
func (u *clientsUpstream) responsesWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(64 << 20)
	for n := 0; ; n++ {
		_, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if eventType(string(msg)) != "response.create" {
			continue
		}
		for _, ev := range responseEvents(fmt.Sprintf("resp_ws_%d", n)) {
			if err := c.Write(r.Context(), websocket.MessageText, []byte(ev)); err != nil {
				return
			}
		}
	}
}

// responseEvents are the Responses API events of one answer whose text
// is upstreamAnswer.
func responseEvents(id string) []string {
	item := `{"id":"msg_` + id + `","type":"message","role":"assistant","status":"completed","content":[{"type":"output_text","text":"` + upstreamAnswer + `","annotations":[]}]}`
	usage := `{"input_tokens":10,"input_tokens_details":{"cached_tokens":0},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":13}`
	return []string{
		`{"type":"response.created","sequence_number":0,"response":{"id":"` + id + `","object":"response","status":"in_progress","output":[]}}`,
		`{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"msg_` + id + `","type":"message","role":"assistant","status":"in_progress","content":[]}}`,
		`{"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_` + id + `","output_index":0,"content_index":0,"delta":"` + upstreamAnswer + `"}`,
		`{"type":"response.output_item.done","sequence_number":3,"output_index":0,"item":` + item + `}`,
		`{"type":"response.completed","sequence_number":4,"response":{"id":"` + id + `","object":"response","status":"completed","output":[` + item + `],"usage":` + usage + `}}`,
	}
}

func eventType(ev string) string {
	var v struct {
		Type string `json:"type"`
	}
	json.Unmarshal([]byte(ev), &v)
	return v.Type
}

// sawClient reports whether the upstream received a request with the real
// key from a client whose User-Agent matches ua.
func (u *clientsUpstream) sawClient(ua *regexp.Regexp) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, h := range u.hits {
		if h.realKey && ua.MatchString(h.userAgent) {
			return true
		}
	}
	return false
}

func (u *clientsUpstream) String() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var b strings.Builder
	for _, h := range u.hits {
		fmt.Fprintf(&b, "  %s %s ws=%v real-key=%v ua=%q\n", h.method, h.path, h.websocket, h.realKey, h.userAgent)
	}
	return b.String()
}

// firstRun is a `sessctl serve` started as a new user would, and what it
// printed.
type firstRun struct {
	cmd      *exec.Cmd
	dir      string // where serve runs; its data directory is dir/data
	stderr   *testutil.Buffer
	exports  string   // the lines printed for the runner
	adminURL string   // from the admin line
	adminTok string   // from the admin line
	runner   []string // a runner's environment: PATH, HOME and the printed lines, evaluated by sh
}

// startFirstRun runs `sessctl serve` in a fresh directory with the default
// relative data directory and ports picked by the kernel, and evaluates
// the printed runner lines in a shell started in runnerDir.
func startFirstRun(t *testing.T, up *clientsUpstream, runnerDir string) *firstRun {
	t.Helper()
	s := &firstRun{dir: t.TempDir(), stderr: new(testutil.Buffer)}
	s.cmd = exec.Command(sessctlBin, "serve", "--listen", "127.0.0.1:0", "--admin_listen", "127.0.0.1:0",
		"--upstream_addr", up.addr, "--upstream_ca_file", up.caFile)
	s.cmd.Dir = s.dir
	s.cmd.Env = append(withoutProxyEnv(os.Environ()), "OPENAI_API_KEY="+realKey)
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })

	type printed struct{ exports, adminURL, adminTok string }
	done := make(chan printed, 1)
	go func() {
		var p printed
		var block []string
		inBlock := false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "On the runner:"):
				inBlock = true
			case inBlock && strings.TrimSpace(line) == "":
				inBlock = false
				p.exports = strings.Join(block, "\n") + "\n"
			case inBlock:
				block = append(block, strings.TrimSpace(line))
			}
			if m := regexp.MustCompile(`export SESSCTL_ADMIN_URL=(\S+) SESSCTL_ADMIN_TOKEN=(\S+)`).FindStringSubmatch(line); m != nil {
				p.adminURL, p.adminTok = m[1], m[2]
			}
			if p.exports != "" && p.adminTok != "" {
				done <- p
				io.Copy(io.Discard, out)
				return
			}
		}
		close(done)
	}()
	select {
	case p, ok := <-done:
		if !ok {
			t.Fatalf("sessctl serve printed no first-run lines; stderr:\n%s", s.stderr)
		}
		s.exports, s.adminURL, s.adminTok = p.exports, p.adminURL, p.adminTok
	case <-time.After(60 * time.Second):
		t.Fatalf("no first-run lines within 60s; stderr:\n%s", s.stderr)
	}

	// What a shell in the runner's directory makes of the lines.
	sh := exec.Command("sh", "-c", s.exports+"exec env")
	sh.Dir = runnerDir
	sh.Env = []string{"PATH=" + os.Getenv("PATH")}
	env, err := sh.Output()
	if err != nil {
		t.Fatalf("the printed lines do not run in sh: %v\n%s", err, s.exports)
	}
	s.runner = append(strings.Split(strings.TrimSpace(string(env)), "\n"), "HOME="+filepath.Join(runnerDir, "home"))
	if err := os.MkdirAll(filepath.Join(runnerDir, "home"), 0o700); err != nil {
		t.Fatal(err)
	}
	return s
}

// repoRoot returns the repository's top directory (where go.mod is).
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOMOD: %v %s", err, out)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// withoutProxyEnv drops the developer's proxy and CA settings.
func withoutProxyEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
			"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "OPENAI_API_KEY", "CODEX_API_KEY":
			return true
		}
		return false
	})
}

// getenv returns name's value in a KEY=value list.
func getenv(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// setenv returns env with name set to value.
func setenv(env []string, name, value string) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
	return append(out, name+"="+value)
}

func (s *firstRun) stop(t *testing.T) { stopServe(t, s.cmd) }

// stopServe stops a `sessctl serve` with SIGTERM, as an operator does.
func stopServe(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Errorf("sessctl serve did not stop on SIGTERM")
	}
}

// runClient runs a client in dir with exactly env, and returns its
// standard output; it fails the test with everything known on an error.
func runClient(t *testing.T, s *firstRun, up *clientsUpstream, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\nstdout:\n%s\nstderr:\n%s\nupstream saw:\n%s\nsessctl stderr:\n%s",
			name, args, err, stdout.String(), stderr.String(), up, s.stderr)
	}
	return stdout.String()
}

// pythonWith returns a Python interpreter that can import module, or
// skips the test.
func pythonWith(t *testing.T, module, install string) string {
	t.Helper()
	var tried []string
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		py, err := exec.LookPath(name)
		if err != nil || slices.Contains(tried, py) {
			continue
		}
		tried = append(tried, py)
		if exec.Command(py, "-c", "import "+module).Run() == nil {
			return py
		}
	}
	t.Skipf("no python3 with the %s module (tried %q): %s", module, tried, install)
	return ""
}

func TestClientsWithPrintedExports(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh: cannot evaluate the printed lines")
	}
	up := newClientsUpstream(t)
	work := t.TempDir() // the runner's directory: not sessctl's
	s := startFirstRun(t, up, work)
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)
	clients := filepath.Join(here, "testdata", "clients")

	// The lines: the port the kernel picked, the CA by absolute path,
	// every variable a client reads.
	proxyURL := getenv(s.runner, "HTTPS_PROXY")
	caFile := filepath.Join(s.dir, "data", "ca", "ca.crt")
	t.Logf("printed:\n%s", s.exports)
	for _, want := range []string{"OPENAI_API_KEY", "CODEX_API_KEY"} {
		if v := getenv(s.runner, want); !strings.HasPrefix(v, "sct_") {
			t.Errorf("printed %s = %q, want a runner token", want, v)
		}
	}
	for _, name := range []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"} {
		if got := getenv(s.runner, name); got != caFile {
			t.Errorf("printed %s = %q, want the CA's absolute path %q", name, got, caFile)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "the serving log line", func() bool { return strings.Contains(s.stderr.String(), "sessctl serving") })
	m := regexp.MustCompile(`msg="sessctl serving" listen=(\S+)`).FindStringSubmatch(s.stderr.String())
	if m == nil || proxyURL != "http://"+m[1] || strings.HasSuffix(proxyURL, ":0") {
		t.Fatalf("printed HTTPS_PROXY=%s; the proxy listens on %v (stderr:\n%s)", proxyURL, m, s.stderr)
	}
	if !strings.HasPrefix(s.adminURL, "http://127.0.0.1:") || strings.HasSuffix(s.adminURL, ":0") {
		t.Errorf("printed SESSCTL_ADMIN_URL=%s, want the admin port in use", s.adminURL)
	}

	const chat = `curl -sS --fail-with-body --max-time 30 https://api.openai.com/v1/chat/completions ` +
		`-H "Authorization: Bearer $OPENAI_API_KEY" -H 'Content-Type: application/json' ` +
		`-d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello from curl"}]}'`
	// onlyCA keeps, of the printed CA variables, the one README names for
	// a client: the client must work with it alone.
	onlyCA := func(keep string) []string {
		return slices.DeleteFunc(slices.Clone(s.runner), func(kv string) bool {
			k, _, _ := strings.Cut(kv, "=")
			return k != keep && slices.Contains([]string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"}, k)
		})
	}
	var ran atomic.Int32 // requests the clients made
	check := func(t *testing.T, out string, ua string) {
		t.Helper()
		if !strings.Contains(out, upstreamAnswer) {
			t.Errorf("the client printed %q, want the upstream's answer %q", out, upstreamAnswer)
		}
		if !up.sawClient(regexp.MustCompile(ua)) {
			t.Errorf("the upstream saw no request with the real key from a client matching %s; it saw:\n%s", ua, up)
		}
		ran.Add(1)
	}

	// The clients run side by side, each in its own subtest; the group
	// ends when they all have.
	t.Run("clients", func(t *testing.T) {
		t.Run("curl", func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath("curl"); err != nil {
				t.Skip("curl is not installed (apt-get install curl)")
			}
			check(t, runClient(t, s, up, work, s.runner, "sh", "-c", chat), `^curl/`)
			check(t, runClient(t, s, up, work, onlyCA("CURL_CA_BUNDLE"), "sh", "-c", chat), `^curl/`)
			check(t, runClient(t, s, up, work, onlyCA("SSL_CERT_FILE"), "sh", "-c", chat), `^curl/`)
		})

		t.Run("curl with another CURL_CA_BUNDLE", func(t *testing.T) {
			t.Parallel()
			// A runner image that sets CURL_CA_BUNDLE to its own bundle:
			// curl reads it before SSL_CERT_FILE, so SSL_CERT_FILE alone
			// does not make curl trust sessctl, which is why the printed
			// lines set CURL_CA_BUNDLE too.
			if _, err := exec.LookPath("curl"); err != nil {
				t.Skip("curl is not installed (apt-get install curl)")
			}
			other := t.TempDir()
			if err := ca.Init(other, ca.InitOptions{Hosts: []string{"example.com"}}); err != nil {
				t.Fatal(err)
			}
			env := setenv(s.runner, "CURL_CA_BUNDLE", filepath.Join(other, "ca.crt"))
			cmd := exec.Command("sh", "-c", chat)
			cmd.Dir, cmd.Env = work, env
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 60 {
				t.Fatalf("curl with SSL_CERT_FILE=sessctl's CA but CURL_CA_BUNDLE=another: %v, want exit 60 (certificate not trusted): %s", err, out)
			}
		})

		t.Run("python requests", func(t *testing.T) {
			t.Parallel()
			py := pythonWith(t, "requests", "apt-get install python3-requests")
			check(t, runClient(t, s, up, work, s.runner, py, filepath.Join(clients, "requests_chat.py")), `^python-requests/`)
			check(t, runClient(t, s, up, work, onlyCA("REQUESTS_CA_BUNDLE"), py, filepath.Join(clients, "requests_chat.py")), `^python-requests/`)
		})

		t.Run("python httpx", func(t *testing.T) {
			t.Parallel()
			py := pythonWith(t, "httpx", "apt-get install python3-httpx")
			check(t, runClient(t, s, up, work, s.runner, py, filepath.Join(clients, "httpx_chat.py")), `^python-httpx/`)
			check(t, runClient(t, s, up, work, onlyCA("SSL_CERT_FILE"), py, filepath.Join(clients, "httpx_chat.py")), `^python-httpx/`)
		})

		t.Run("python openai", func(t *testing.T) {
			t.Parallel()
			py := pythonWith(t, "openai", "the openai Python package is not in Debian bookworm; pip install openai where PyPI is reachable")
			check(t, runClient(t, s, up, work, s.runner, py, filepath.Join(clients, "openai_chat.py")), `^OpenAI/Python`)
		})

		t.Run("node openai sdk", func(t *testing.T) {
			t.Parallel()
			node, err := exec.LookPath("node")
			if err != nil {
				t.Skip("node is not installed (apt-get install nodejs)")
			}
			sdk := filepath.Join(root, "proxy", "testdata", "node")
			if _, err := os.Stat(filepath.Join(sdk, "node_modules", "undici", "package.json")); err != nil {
				t.Skip("proxy/testdata/node/node_modules is absent or stale: run `npm ci --prefix proxy/testdata/node`")
			}
			check(t, runClient(t, s, up, work, s.runner, node, filepath.Join(sdk, "chat.mjs")), `^OpenAI/JS `)
			check(t, runClient(t, s, up, work, onlyCA("NODE_EXTRA_CA_CERTS"), node, filepath.Join(sdk, "chat.mjs")), `^OpenAI/JS `)
		})

		t.Run("go", func(t *testing.T) {
			t.Parallel()
			bin := filepath.Join(t.TempDir(), "gochat")
			if out, err := exec.Command("go", "build", "-o", bin, "./testdata/clients/gochat").CombinedOutput(); err != nil {
				t.Fatalf("building testdata/clients/gochat: %v\n%s", err, out)
			}
			check(t, runClient(t, s, up, work, s.runner, bin), `^Go-http-client/`)
			check(t, runClient(t, s, up, work, onlyCA("SSL_CERT_FILE"), bin), `^Go-http-client/`)
		})

		t.Run("java", func(t *testing.T) {
			t.Parallel()
			java, err1 := exec.LookPath("java")
			keytool, err2 := exec.LookPath("keytool")
			if err1 != nil || err2 != nil {
				t.Skip("java or keytool is not installed (apt-get install default-jdk-headless)")
			}
			// As README says: import the CA with keytool (here into a trust
			// store of the runner's own, not the JDK's cacerts), proxy from
			// JAVA_TOOL_OPTIONS.
			store := filepath.Join(work, "sessctl-truststore.p12")
			runClient(t, s, up, work, s.runner, keytool, "-importcert", "-noprompt", "-alias", "sessctl",
				"-file", getenv(s.runner, "SSL_CERT_FILE"), "-keystore", store, "-storetype", "PKCS12", "-storepass", "changeit")
			pu, err := url.Parse(proxyURL)
			if err != nil {
				t.Fatal(err)
			}
			env := append(slices.Clone(s.runner), fmt.Sprintf("JAVA_TOOL_OPTIONS=-Dhttps.proxyHost=%s -Dhttps.proxyPort=%s "+
				"-Djavax.net.ssl.trustStore=%s -Djavax.net.ssl.trustStorePassword=changeit", pu.Hostname(), pu.Port(), store))
			check(t, runClient(t, s, up, work, env, java, filepath.Join(clients, "Chat.java")), `^Java-http-client/`)
		})

		t.Run("codex cli", func(t *testing.T) {
			t.Parallel()
			codex := filepath.Join(here, "testdata", "codex", "node_modules", ".bin", "codex")
			if _, err := os.Stat(codex); err != nil {
				t.Skip("the Codex CLI is absent: run `npm ci --prefix internal/command/testdata/codex`")
			}
			out := runClient(t, s, up, work, s.runner, codex, "exec", "--skip-git-repo-check", "say hello")
			check(t, out, `^codex_exec/`)

			// The Codex CLI sends CODEX_API_KEY: with OPENAI_API_KEY alone it
			// sends no credential sessctl knows, and fails.
			env := slices.DeleteFunc(slices.Clone(s.runner), func(kv string) bool { return strings.HasPrefix(kv, "CODEX_API_KEY=") })
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, codex, "exec", "--skip-git-repo-check", "say hello")
			cmd.Dir, cmd.Env = work, env
			out2, err := cmd.CombinedOutput()
			if err == nil || strings.Contains(string(out2), upstreamAnswer) || !strings.Contains(string(out2), "401") {
				t.Errorf("codex exec with OPENAI_API_KEY but no CODEX_API_KEY: %v, want a 401 from sessctl:\n%s", err, out2)
			}
		})
	})

	if ran.Load() == 0 {
		t.Skip("no client could run")
	}
	// Every exchange is in the log, attributed to the first-run runner.
	s.stop(t)
	out, code := run(t, sessctlBin, "sessions", "ls", "--db", filepath.Join(s.dir, "data", "sessions.db"), "--json", "--outcome", "forwarded")
	if code != 0 {
		t.Fatalf("sessions ls: exit %d: %s", code, out)
	}
	n := 0
	for line := range strings.Lines(out) {
		var rec store.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("sessions ls --json line %q: %v", line, err)
		}
		if rec.Identity.Runner == "runner-1" && rec.Host == "api.openai.com" {
			n++
		}
	}
	if n < int(ran.Load()) {
		t.Errorf("%d forwarded records of runner-1 for %d requests the clients made:\n%s", n, ran.Load(), out)
	}
}
