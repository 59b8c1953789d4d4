package command

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/pgtest"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// The tests in this file run two real sessctl replicas (real proxies,
// their own bbolt logs and CAs) and the console on one throwaway
// PostgreSQL, with the upstream stand-in of main_test.go.

// fleetConfig is the config the replicas share: runner ci-1's requests
// wait for approval, ci-2's pass; alice and bob are approvers.
type fleetConfig struct {
	path               string
	held, free         string // runner tokens
	alice, bob, runner string // admin tokens; runner is ci-1's own name as an admin
}

func writeFleetConfig(t *testing.T) fleetConfig {
	t.Helper()
	tok := func() string {
		s, err := identity.NewRunnerToken()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	c := fleetConfig{path: filepath.Join(t.TempDir(), "sessctl.yaml"), held: tok(), free: tok(), alice: tok(), bob: tok(), runner: tok()}
	yaml := fmt.Sprintf(`runners:
  - {name: ci-1, token: %q}
  - {name: ci-2, token: %q}
admin_tokens:
  - {name: alice, token: %q}
  - {name: bob, token: %q}
  - {name: ci-1, token: %q}
policies:
  - name: needs-human
    match: {runner: ci-1}
    approve: always
approval_timeout: 2m
`, c.held, c.free, c.alice, c.bob, c.runner)
	if err := os.WriteFile(c.path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// replica is one running `sessctl serve`.
type shareReplica struct {
	cmd           *exec.Cmd
	stderr        *bytes.Buffer
	listen, admin string
	data          string
	client        *http.Client // through the proxy, trusting its CA
}

func startShareReplica(t *testing.T, cfg fleetConfig, dsn, upAddr, upCA string) *shareReplica {
	t.Helper()
	r := &shareReplica{listen: freeAddr(t), admin: freeAddr(t), data: t.TempDir(), stderr: new(bytes.Buffer)}
	r.cmd = exec.Command(sessctlBin, "serve", "--config", cfg.path, "--listen", r.listen, "--admin_listen", r.admin,
		"--data_dir", r.data, "--upstream_addr", upAddr, "--upstream_ca_file", upCA, "--central_dsn", dsn)
	r.cmd.Env = append(os.Environ(), "OPENAI_API_KEY="+realKey)
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- r.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			r.cmd.Process.Kill()
			<-done
			t.Errorf("a replica did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("replica %s stderr:\n%s", r.admin, r.stderr)
		}
	})
	testutil.WaitFor(t, 30*time.Second, "the replica to listen", func() bool {
		for _, a := range []string{r.listen, r.admin} {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})
	pem, err := os.ReadFile(filepath.Join(r.data, "ca", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	r.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: r.listen}),
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	return r
}

type answer struct {
	status int
	body   string
	err    error
}

// chat sends a chat completion through the replica in the background.
func (r *shareReplica) chat(token string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := r.client.Do(req)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- answer{status: resp.StatusCode, body: string(b)}
	}()
	return ch
}

func waitAnswer(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatal(a.err)
		}
		return a
	case <-time.After(90 * time.Second):
		t.Fatal("no answer through the proxy")
	}
	return answer{}
}

func apiClient(t *testing.T, addr, token string) *admin.Client {
	t.Helper()
	c, err := admin.NewClient("http://"+addr, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// heldOn waits until the inbox behind c lists one request held by origin
// other than those in seen, and returns it.
func heldOn(t *testing.T, c *admin.Client, seen map[string]bool) approval.Request {
	t.Helper()
	var got approval.Request
	testutil.WaitFor(t, 30*time.Second, "a held request to be listed", func() bool {
		list, err := c.Approvals(context.Background())
		if err != nil {
			return false
		}
		for _, r := range list {
			if !seen[r.ID] {
				got = r
				seen[r.ID] = true
				return true
			}
		}
		return false
	})
	return got
}

// originOf returns the origin of a replica's log, from its genesis record.
func originOf(t *testing.T, r *shareReplica, token string) string {
	t.Helper()
	rec, err := apiClient(t, r.admin, token).Session(context.Background(), "0")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Kind != store.KindGenesis || rec.Extra["origin"] == "" {
		t.Fatalf("record 0 of %s is %+v", r.admin, rec.Record)
	}
	return rec.Extra["origin"]
}

func TestFleetApprovalsAndQueries(t *testing.T) {
	pg := pgtest.Start(t)
	upAddr, upCA := upstreamStandIn(t)
	cfg := writeFleetConfig(t)
	a := startShareReplica(t, cfg, pg.DSN, upAddr, upCA)
	b := startShareReplica(t, cfg, pg.DSN, upAddr, upCA)
	originA, originB := originOf(t, a, cfg.alice), originOf(t, b, cfg.alice)
	seen := map[string]bool{}

	// Traffic through both.
	for _, r := range []*shareReplica{a, b} {
		if ans := waitAnswer(t, r.chat(cfg.free)); ans.status != 200 || !strings.Contains(ans.body, "hello from upstream") {
			t.Fatalf("ci-2 through %s: %d %s", r.admin, ans.status, ans.body)
		}
	}

	// Held on A, listed and approved through B's admin API with the CLI.
	res := a.chat(cfg.held)
	held := heldOn(t, apiClient(t, b.admin, cfg.alice), seen)
	if held.Origin != originA || held.Requester == "" {
		t.Fatalf("B lists %+v; want it held by %s", held, originA)
	}
	cmd := exec.Command(sessctlBin, "approvals", "ls", "--admin", "http://"+b.admin)
	cmd.Env = append(os.Environ(), "SESSCTL_ADMIN_TOKEN="+cfg.bob)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), held.ID) || !strings.Contains(string(out), originA) {
		t.Fatalf("approvals ls on B: %v\n%s", err, out)
	}
	// The runner's own name cannot approve it, through B either.
	out, code := run(t, sessctlBin, "approvals", "approve", held.ID, "--admin", "http://"+b.admin, "--token", cfg.runner)
	if code != 1 || !strings.Contains(out, "cannot decide its own request") {
		t.Fatalf("self-approval through B: exit %d: %s", code, out)
	}
	out, code = run(t, sessctlBin, "approvals", "approve", held.ID, "--admin", "http://"+b.admin, "--token", cfg.bob, "--reason", "looks fine")
	if code != 0 || !strings.Contains(out, "approved by bob") {
		t.Fatalf("approve through B: exit %d: %s", code, out)
	}
	if ans := waitAnswer(t, res); ans.status != 200 || !strings.Contains(ans.body, "hello from upstream") {
		t.Fatalf("the approved request on A: %d %s", ans.status, ans.body)
	}

	// Denied through the console: the usual 403.
	consoleAddr := freeAddr(t)
	console := exec.Command(sessctlBin, "console", "--central", pg.DSN, "--listen", consoleAddr, "--config", cfg.path)
	var consoleErr bytes.Buffer
	console.Stderr = &consoleErr
	if err := console.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		console.Process.Signal(syscall.SIGTERM)
		console.Wait()
		if t.Failed() {
			t.Logf("console stderr:\n%s", &consoleErr)
		}
	})
	testutil.WaitFor(t, 30*time.Second, "the console to listen", func() bool {
		c, err := net.Dial("tcp", consoleAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	res = a.chat(cfg.held)
	cc := apiClient(t, consoleAddr, cfg.alice)
	held = heldOn(t, cc, seen)
	if held.Origin != originA {
		t.Fatalf("the console lists %+v", held)
	}
	if _, err := cc.Decide(context.Background(), held.ID, approval.Denied, "not on a Friday"); err != nil {
		t.Fatal(err)
	}
	ans := waitAnswer(t, res)
	if ans.status != 403 || !strings.Contains(ans.body, "approval_denied") || !strings.Contains(ans.body, "not on a Friday") {
		t.Fatalf("the denied request on A: %d %s", ans.status, ans.body)
	}

	// The fleet's sessions: both origins, from the CLI, B's API and the
	// console; the decisions were recorded in A's log.
	testutil.WaitFor(t, 30*time.Second, "both logs shipped", func() bool {
		out, code := run(t, sessctlBin, "sessions", "ls", "--central", pg.DSN, "--kind", "approval", "--json", "--limit", "0")
		return code == 0 && strings.Count(out, `"decision":"denied"`) == 1 && strings.Count(out, `"decision":"approved"`) == 1
	})
	out, code = run(t, sessctlBin, "sessions", "ls", "--central", pg.DSN, "--runner", "ci-2")
	if code != 0 || !strings.Contains(out, originA) || !strings.Contains(out, originB) || !strings.Contains(out, "ORIGIN") {
		t.Fatalf("sessions ls --central: exit %d\n%s", code, out)
	}
	out, code = run(t, sessctlBin, "sessions", "ls", "--central", pg.DSN, "--kind", "approval", "--json", "--limit", "0")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec store.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("sessions ls --central --json: %v: %s", err, line)
		}
		if rec.Origin != originA {
			t.Fatalf("an approval record of origin %q; all were held on A (%s)", rec.Origin, originA)
		}
		if rec.Approval.Decision == approval.Approved && rec.Approval.By != "bob" {
			t.Fatalf("approval recorded as by %q", rec.Approval.By)
		}
	}
	for _, c := range []*admin.Client{apiClient(t, b.admin, cfg.alice), cc} {
		origins := map[string]bool{}
		if err := c.Sessions(context.Background(), query.Query{Runner: "ci-2"}, func(r *store.Record) error { origins[r.Origin] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		if !origins[originA] || !origins[originB] {
			t.Fatalf("the API lists origins %v", origins)
		}
	}
	ref := "1@" + originB
	out, code = run(t, sessctlBin, "sessions", "show", ref, "--central", pg.DSN)
	if code != 0 || !strings.Contains(out, "origin    "+originB) {
		t.Fatalf("sessions show %s: exit %d\n%s", ref, code, out)
	}
	if d, err := cc.Session(context.Background(), ref); err != nil || d.Origin != originB {
		t.Fatalf("the console's record %s: %+v %v", ref, d, err)
	}
	// The console's pages: log in with the same admin token, list the
	// fleet, open a record of B by its SEQ@ORIGIN link.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	page := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d\n%s", resp.Request.URL, resp.StatusCode, b)
		}
		return string(b)
	}
	list := page(browser.PostForm("http://"+consoleAddr+"/login", url.Values{"token": {cfg.alice}, "next": {"/sessions?runner=ci-2"}}))
	link := `href="/sessions/` + url.PathEscape(ref) + `"`
	if !strings.Contains(list, link) || !strings.Contains(list, originA) {
		t.Fatalf("the console's sessions page lacks %s or origin %s:\n%s", link, originA, list)
	}
	rp := page(browser.Get("http://" + consoleAddr + "/sessions/" + url.PathEscape(ref)))
	if !strings.Contains(rp, `id="origin">`+originB+"<") {
		t.Fatalf("the console's page of %s does not name its origin:\n%s", ref, rp)
	}
	page(browser.Get("http://" + consoleAddr + "/approvals"))

	// PostgreSQL down: A's own admin API still decides its held request.
	pg.Stop()
	res = a.chat(cfg.held)
	ca := apiClient(t, a.admin, cfg.alice)
	held = heldOn(t, ca, seen)
	var se *admin.StatusError
	if _, err := apiClient(t, b.admin, cfg.alice).Decide(context.Background(), held.ID, approval.Approved, ""); !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("B deciding while PostgreSQL is down: %v", err)
	}
	if d, err := ca.Decide(context.Background(), held.ID, approval.Approved, "db is down"); err != nil || d.By != "alice" {
		t.Fatalf("A deciding its own request without PostgreSQL: %+v %v", d, err)
	}
	if ans := waitAnswer(t, res); ans.status != 200 {
		t.Fatalf("the request approved on A without PostgreSQL: %d %s", ans.status, ans.body)
	}
	pg.Start()
	testutil.WaitFor(t, 60*time.Second, "the decision made without PostgreSQL to be shipped", func() bool {
		out, _ := run(t, sessctlBin, "sessions", "ls", "--central", pg.DSN, "--kind", "approval", "--json", "--limit", "0")
		return strings.Contains(out, `"reason":"db is down"`)
	})
}
