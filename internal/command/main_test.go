package command

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/internal/testutil"
)

// The tests in this file run the real sessctl binary, as a user would:
// `sessctl serve` on embedded defaults, curl through HTTPS_PROXY, then
// `sessctl verify`.

var sessctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sessctl-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sessctlBin = filepath.Join(dir, "sessctl")
	if out, err := exec.Command("go", "build", "-o", sessctlBin, "github.com/sessctl/sessctl").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sessctl: %v\n%s", err, out)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const realKey = "sk-real-key-for-the-e2e-test-000000"

// upstreamStandIn serves TLS for api.openai.com with a CA of its own and
// answers chat completions, checking the real key.
func upstreamStandIn(t *testing.T) (addr, caFile string) {
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
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+realKey {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"message":"wrong key","type":"invalid_request_error"}}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-e2e","choices":[{"message":{"role":"assistant","content":"hello from upstream"}}]}`)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), filepath.Join(dir, "ca.crt")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type serveProc struct {
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	stderr *bytes.Buffer
	token  string
	admin  string // admin listener host:port
	adminT string // admin token
	listen string
	data   string
}

// startServe runs `sessctl serve` with no config file, on fresh ports,
// and waits until the first-run token is printed and the proxy listens.
func startServe(t *testing.T, upAddr, upCA string) *serveProc {
	t.Helper()
	s := &serveProc{listen: freeAddr(t), admin: freeAddr(t), data: t.TempDir(), stdout: new(bytes.Buffer), stderr: new(bytes.Buffer)}
	s.cmd = exec.Command(sessctlBin, "serve", "--listen", s.listen, "--admin_listen", s.admin,
		"--data_dir", s.data, "--upstream_addr", upAddr, "--upstream_ca_file", upCA)
	s.cmd.Env = append(os.Environ(), "OPENAI_API_KEY="+realKey, "HTTPS_PROXY=http://"+s.listen)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last registered first: stderr is read after the stop.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sessctl serve stderr:\n%s", s.stderr)
		}
	})
	t.Cleanup(func() { s.stop(t) })
	tokens, admins := make(chan string, 1), make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			s.stdout.WriteString(line + "\n")
			if tok, ok := strings.CutPrefix(line, "export OPENAI_API_KEY="); ok {
				tokens <- tok
			}
			if _, tok, ok := strings.Cut(line, "SESSCTL_ADMIN_TOKEN="); ok {
				admins <- tok
			}
		}
	}()
	for _, ch := range []struct {
		dst  *string
		src  chan string
		what string
	}{{&s.token, tokens, "runner"}, {&s.adminT, admins, "admin"}} {
		select {
		case *ch.dst = <-ch.src:
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s token printed on first run; stderr:\n%s", ch.what, s.stderr)
		}
	}
	testutil.WaitFor(t, 15*time.Second, "the proxy to listen", func() bool {
		c, err := net.Dial("tcp", s.listen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

func (s *serveProc) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-done
		t.Errorf("sessctl serve did not stop on SIGTERM")
	}
}

func run(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), 0
}

func TestServeCurlVerifyTamper(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	upAddr, upCA := upstreamStandIn(t)
	s := startServe(t, upAddr, upCA)
	caCert := filepath.Join(s.data, "ca", "ca.crt")
	out, code := run(t, "curl", "-sS", "--max-time", "20", "--proxy", "http://"+s.listen, "--cacert", caCert,
		"-H", "Authorization: Bearer "+s.token, "-H", "Content-Type: application/json",
		"-d", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`,
		"https://api.openai.com/v1/chat/completions")
	if code != 0 || !strings.Contains(out, "hello from upstream") {
		t.Fatalf("curl exit %d: %s\nserve stderr:\n%s", code, out, s.stderr)
	}
	out, code = run(t, "curl", "-sS", "--max-time", "20", "--proxy", "http://"+s.listen, "--cacert", caCert,
		"-H", "Authorization: Bearer not-a-runner", "https://api.openai.com/v1/models")
	if code != 0 || !strings.Contains(out, "sessctl_unauthenticated") {
		t.Fatalf("unknown token: curl exit %d: %s", code, out)
	}
	// A running log is verified from a snapshot over the admin API, and
	// queried there (the file itself is locked).
	cmd := exec.Command(sessctlBin, "verify", "--admin", "http://"+s.admin)
	cmd.Env = append(os.Environ(), "SESSCTL_ADMIN_TOKEN="+s.adminT)
	if live, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(live), "ok: ") {
		t.Fatalf("verify --admin: %v: %s", err, live)
	}
	out, code = run(t, sessctlBin, "sessions", "ls", "--admin", "http://"+s.admin, "--token", s.adminT, "--outcome", "forwarded")
	if code != 0 || !strings.Contains(out, "/v1/chat/completions") {
		t.Fatalf("sessions ls --admin: exit %d: %s", code, out)
	}
	out, code = run(t, sessctlBin, "sessions", "ls", "--admin", "http://"+s.admin, "--token", s.adminT, "--provider", "openai", "--outcome", "forwarded")
	if code != 0 || !strings.Contains(out, "/v1/chat/completions") {
		t.Fatalf("sessions ls --provider openai: exit %d: %s", code, out)
	}
	out, code = run(t, sessctlBin, "sessions", "ls", "--admin", "http://"+s.admin, "--token", s.adminT, "--provider", "anthropic")
	if code != 0 || strings.Contains(out, "/v1/chat/completions") {
		t.Fatalf("sessions ls --provider anthropic lists OpenAI exchanges: exit %d: %s", code, out)
	}
	cmd = exec.Command(sessctlBin, "verify", "--admin", "http://"+s.admin)
	cmd.Env = append(os.Environ(), "SESSCTL_ADMIN_TOKEN=wrong")
	if live, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("verify --admin with a wrong admin token succeeded: %s", live)
	}
	// The proxy's own HTTPS_PROXY points at itself: the answer above came
	// from the upstream stand-in, so it did not loop.
	s.stop(t)
	db := filepath.Join(s.data, "sessions.db")
	out, code = run(t, sessctlBin, "verify", "--db", db)
	if code != 0 || !regexp.MustCompile(`^ok: \d+ records`).MatchString(out) {
		t.Fatalf("verify exit %d: %s", code, out)
	}
	data, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{realKey, s.token} {
		if bytes.Contains(data, []byte(secret)) {
			t.Fatalf("a credential is stored in the database")
		}
	}
	// Flip one byte of the forwarded exchange's record: its status.
	i := bytes.Index(data, []byte(`"status":200`))
	if i < 0 {
		t.Fatal("no forwarded record found in the file")
	}
	data[i+len(`"status":20`)] = '1'
	if err := os.WriteFile(db, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, sessctlBin, "verify", "--db", db)
	if code != 1 || !regexp.MustCompile(`record \d+: modified`).MatchString(out) {
		t.Fatalf("verify after tampering: exit %d: %s", code, out)
	}
}

func TestBadConfigExits2(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"unknown key":  "listen: 127.0.0.1:0\nno_such_key: 1\n",
		"bad value":    "max_body: lots\n",
		"bad listen":   "listen: nowhere\n",
		"bad duration": "approval_timeout: soon\n",
		"not yaml":     "listen: [\n",
		// A key of another provider's must never go there.
		"intercepted host without provider": "intercept: [api.openai.com, llm.corp.example]\n",
		"unknown provider":                  "intercept: [llm.corp.example]\nproviders: {llm.corp.example: gemini}\n",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			os.WriteFile(p, []byte(body), 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, sessctlBin, "serve", "--config", p, "--data_dir", t.TempDir()).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2; output: %s", err, out)
			}
			if !strings.Contains(string(out), "config") {
				t.Errorf("error does not say what is wrong: %s", out)
			}
			if strings.Contains(name, "provider") && !strings.Contains(string(out), "llm.corp.example") {
				t.Errorf("error does not name the host: %s", out)
			}
		})
	}
}

func TestSessionsSearchFindsMaskedSecret(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	const secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
	upAddr, upCA := upstreamStandIn(t)
	s := startServe(t, upAddr, upCA)
	out, code := run(t, "curl", "-sS", "--max-time", "20", "--proxy", "http://"+s.listen,
		"--cacert", filepath.Join(s.data, "ca", "ca.crt"),
		"-H", "Authorization: Bearer "+s.token, "-H", "Content-Type: application/json",
		"-d", `{"model":"m","messages":[{"role":"user","content":"my token is `+secret+`"}]}`,
		"https://api.openai.com/v1/chat/completions")
	if code != 0 || !strings.Contains(out, "hello from upstream") {
		t.Fatalf("curl exit %d: %s", code, out)
	}
	s.stop(t)
	db := filepath.Join(s.data, "sessions.db")
	if data, _ := os.ReadFile(db); bytes.Contains(data, []byte(secret)) {
		t.Fatal("the masked secret is in the database")
	}
	dir := t.TempDir()
	found, other := filepath.Join(dir, "found"), filepath.Join(dir, "other")
	os.WriteFile(found, []byte(secret+"\n"), 0o600)
	os.WriteFile(other, []byte("ghp_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n"), 0o600)
	out, code = run(t, sessctlBin, "sessions", "search", "--db", db, "--secret-file", found)
	if code != 0 || !strings.Contains(out, "secret 1: record ") {
		t.Fatalf("search for a masked secret: exit %d: %s", code, out)
	}
	out, code = run(t, sessctlBin, "sessions", "search", "--db", db, "--secret-file", other)
	if code != 1 || !strings.Contains(out, "not found") {
		t.Fatalf("search for another secret: exit %d: %s", code, out)
	}
}
