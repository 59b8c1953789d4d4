package command

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/sessctl/sessctl/identity/oidctest"
	"github.com/sessctl/sessctl/internal/pgtest"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// The tests in this file run a fleet: two real sessctl replicas (the
// binary), each with its own bbolt log, sharing a CA, a session key and a
// throwaway PostgreSQL, in front of a local TLS stand-in for the upstream.

const (
	fleetRunnerToken = "sessctl-fleet-runner-token-0123456789"
	fleetAdminToken  = "sessctl-fleet-admin-token-0123456789"
)

// fleetEnv is what the replicas of a test share.
type fleetEnv struct {
	t          *testing.T
	pg         *pgtest.Server
	upAddr     string
	upCA       string
	shared     string // CA and session key
	sessionKey string
	iss        *oidctest.Issuer
	issCA      string
}

func newFleetEnv(t *testing.T) *fleetEnv {
	t.Helper()
	pg := pgtest.Start(t)
	f := &fleetEnv{t: t, pg: pg, shared: t.TempDir()}
	f.upAddr, f.upCA = upstreamStandIn(t)
	key := make([]byte, 32)
	rand.Read(key)
	f.sessionKey = filepath.Join(f.shared, "session.key")
	if err := os.WriteFile(f.sessionKey, key, 0o600); err != nil {
		t.Fatal(err)
	}
	f.iss = oidctest.NewIssuer(t)
	f.issCA = f.iss.CAFile(t)
	return f
}

// replica is one running `sessctl serve` of the fleet.
type replica struct {
	name   string
	cfg    string // config file
	data   string
	listen string
	admin  string
	cmd    *exec.Cmd
	stderr *testutil.Buffer
	env    []string
}

// replica writes a replica's config; sharedKey false gives it a session
// key of its own. The DSN comes from the environment, as in production.
func (f *fleetEnv) replica(name string, sharedKey bool) *replica {
	f.t.Helper()
	r := &replica{name: name, data: f.t.TempDir(), listen: freeAddr(f.t), admin: freeAddr(f.t)}
	keyLine := "session_key_file: " + f.sessionKey + "\n"
	if !sharedKey {
		keyLine = ""
	}
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
data_dir: %s
ca_dir: %s
upstream_addr: %s
upstream_ca_file: %s
%srunners:
  - {name: ci, token: %s}
admin_tokens:
  - {name: auditor, token: %s}
oidc:
  - {issuer: %q, audience: %s, ca_file: %s}
checkpoint_every: 20
checkpoint_interval: 1s
log_level: debug
`, r.listen, r.admin, r.data, filepath.Join(f.shared, "ca"), f.upAddr, f.upCA, keyLine, fleetRunnerToken, fleetAdminToken,
		f.iss.URL(), oidctest.Audience, f.issCA)
	r.cfg = filepath.Join(r.data, "sessctl.yaml")
	if err := os.WriteFile(r.cfg, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	r.env = append(os.Environ(), "OPENAI_API_KEY="+realKey, "SESSCTL_CENTRAL_DSN="+f.pg.DSN)
	r.start(f.t)
	return r
}

// start runs the replica and waits until /healthz answers.
func (r *replica) start(t *testing.T) {
	t.Helper()
	r.stderr = &testutil.Buffer{}
	r.cmd = exec.Command(sessctlBin, "serve", "--config", r.cfg)
	r.cmd.Env = r.env
	r.cmd.Stdout = io.Discard
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := r.cmd
	t.Cleanup(func() { stopCmd(t, cmd) })
	testutil.WaitFor(t, 30*time.Second, r.name+" to serve", func() bool {
		if cmd.ProcessState != nil {
			t.Fatalf("%s exited: %s", r.name, r.stderr)
		}
		resp, err := http.Get("http://" + r.admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func stopCmd(t *testing.T, cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Errorf("sessctl serve did not stop on SIGTERM")
	}
}

// kill ends the replica with SIGKILL: no shutdown record, nothing flushed.
func (r *replica) kill(t *testing.T) {
	t.Helper()
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// health returns the replica's /healthz answer.
func (r *replica) health(t *testing.T) (status int, central struct {
	Records uint64 `json:"records"`
	Shipped uint64 `json:"shipped"`
	Lag     uint64 `json:"lag_records"`
	Known   bool   `json:"known"`
	Error   string `json:"error"`
}) {
	t.Helper()
	resp, err := http.Get("http://" + r.admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Central json.RawMessage `json:"central"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body.Central, &central); err != nil {
		t.Fatalf("/healthz has no central detail: %v", err)
	}
	return resp.StatusCode, central
}

// caughtUp waits until the replica has shipped its whole log.
func (r *replica) caughtUp(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	testutil.WaitFor(t, 60*time.Second, r.name+" to ship its log", func() bool {
		_, c := r.health(t)
		n = c.Records
		return c.Known && c.Lag == 0 && c.Shipped == c.Records
	})
	return n
}

// origin is the replica's log origin: the name of its checkpoint key.
func (r *replica) pubkey(t *testing.T) (origin, keyFile string) {
	t.Helper()
	keyFile = filepath.Join(r.data, "log.key.pub")
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	origin, _, _ = strings.Cut(strings.TrimSpace(string(b)), "+")
	return origin, keyFile
}

// client goes through the replica's proxy and trusts the fleet's CA.
func (f *fleetEnv) client(r *replica) *http.Client {
	f.t.Helper()
	pem, err := os.ReadFile(filepath.Join(f.shared, "ca", "ca.crt"))
	if err != nil {
		f.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pu, _ := url.Parse("http://" + r.listen)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}}
}

// chat sends one chat completion with bearer credential cred and returns
// the status and body.
func chat(c *http.Client, cred, content string) (int, string, error) {
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+content+`"}]}`))
	req.Header.Set("Authorization", "Bearer "+cred)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func mustChat(t *testing.T, c *http.Client, cred, content string) {
	t.Helper()
	code, body, err := chat(c, cred, content)
	if err != nil || code != 200 || !strings.Contains(body, "hello from upstream") {
		t.Fatalf("chat %q: %d %v %s", content, code, err, body)
	}
}

// runVerifyCentral runs sessctl verify --central and returns its output and exit code.
func runVerifyCentral(t *testing.T, dsn string, args ...string) (string, int) {
	t.Helper()
	return run(t, sessctlBin, append([]string{"verify", "--central", dsn}, args...)...)
}

// load sends chats through the replicas from several workers until stop
// is closed, and counts the answers that were not 200.
type load struct {
	sent, failed atomic.Int64
	firstErr     atomic.Value
	stop         chan struct{}
	wg           sync.WaitGroup
}

func startLoad(f *fleetEnv, rs ...*replica) *load {
	l := &load{stop: make(chan struct{})}
	for i := range 4 {
		c := f.client(rs[i%len(rs)])
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				code, body, err := chat(c, fleetRunnerToken, fmt.Sprintf("load %d-%d", i, n))
				l.sent.Add(1)
				if err != nil || code != 200 {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v %.200s", code, err, body))
				}
			}
		}()
	}
	return l
}

func (l *load) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.failed.Load() > 0 {
		t.Fatalf("%d of %d exchanges failed under load, first: %v", l.failed.Load(), l.sent.Load(), l.firstErr.Load())
	}
	if l.sent.Load() == 0 {
		t.Fatal("no exchange was sent under load")
	}
	t.Logf("%d exchanges under load, none failed", l.sent.Load())
}

// shippedOnce checks that the database holds records 0..n-1 of origin,
// each once.
func shippedOnce(t *testing.T, dsn, origin string, n uint64) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows, distinct, maxSeq int64
	err = conn.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT seq), coalesce(max(seq), -1)
FROM sessctl_leaves l JOIN sessctl_origins o ON o.id = l.origin_id WHERE o.origin = $1`, origin).Scan(&rows, &distinct, &maxSeq)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(rows) != n || distinct != rows || maxSeq != rows-1 {
		t.Fatalf("origin %s: %d rows, %d distinct, max seq %d; want records 0..%d once each", origin, rows, distinct, maxSeq, n-1)
	}
}

// TestFleet: two replicas ship into one PostgreSQL; a session token from
// one works on the other; PostgreSQL stops under load and no exchange is
// refused; a replica killed with SIGKILL resumes shipping; verify
// --central passes, and finds tampering.
func TestFleet(t *testing.T) {
	f := newFleetEnv(t)
	a := f.replica("replica A", true)
	b := f.replica("replica B", true)
	ca, cb := f.client(a), f.client(b)
	for i := range 5 {
		mustChat(t, ca, fleetRunnerToken, fmt.Sprintf("to A %d", i))
		mustChat(t, cb, fleetRunnerToken, fmt.Sprintf("to B %d", i))
	}

	// Shared identity: exchange an OIDC token on A, use the session
	// token on B. A replica with its own session key refuses it.
	kid := f.iss.AddKey(t, jose.RS256)
	idToken := f.iss.Sign(t, kid, f.iss.GitHubClaims(time.Now()))
	req, _ := http.NewRequest("POST", "https://sessctl.internal/sessctl/v1/token", nil)
	req.Header.Set("Authorization", "Bearer "+idToken)
	resp, err := ca.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.Token == "" {
		t.Fatalf("token exchange on A: %d\n%s", resp.StatusCode, a.stderr)
	}
	mustChat(t, cb, tok.Token, "session token from A used on B")
	mustChat(t, ca, tok.Token, "session token from A used on A")
	c := f.replica("replica C (own session key)", false)
	if code, body, err := chat(f.client(c), tok.Token, "session token from A used on C"); err != nil || code != 401 {
		t.Fatalf("a replica with another session key answered %d %v: %s", code, err, body)
	}
	stopCmd(t, c.cmd)

	// Both logs shipped; verify --central passes with pinned keys.
	oa, ka := a.pubkey(t)
	ob, kb := b.pubkey(t)
	shippedOnce(t, f.pg.DSN, oa, a.caughtUp(t))
	shippedOnce(t, f.pg.DSN, ob, b.caughtUp(t))
	out, code := runVerifyCentral(t, f.pg.DSN, "--pubkey", ka, "--pubkey", kb, "--origin", oa, "--origin", ob)
	if code != 0 || !strings.Contains(out, "ok: origin "+oa+": ") || !strings.Contains(out, "ok: origin "+ob+": ") {
		t.Fatalf("verify --central: exit %d\n%s", code, out)
	}

	// PostgreSQL down for several seconds under load: no exchange is
	// refused, the lag grows, and once it is back everything is shipped
	// once.
	l := startLoad(f, a, b)
	time.Sleep(500 * time.Millisecond)
	f.pg.Stop()
	time.Sleep(2 * time.Second)
	if _, st := a.health(t); st.Lag == 0 || st.Error == "" {
		t.Errorf("while PostgreSQL is down, A reports lag %d, error %q", st.Lag, st.Error)
	}
	time.Sleep(2 * time.Second)
	f.pg.Start()
	time.Sleep(time.Second)
	l.end(t)
	shippedOnce(t, f.pg.DSN, oa, a.caughtUp(t))
	shippedOnce(t, f.pg.DSN, ob, b.caughtUp(t))
	if out, code := runVerifyCentral(t, f.pg.DSN, "--pubkey", ka, "--pubkey", kb); code != 0 {
		t.Fatalf("verify --central after the outage: exit %d\n%s", code, out)
	}
	var metrics string
	if resp, err := http.Get("http://" + a.admin + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(b)
	}
	if !strings.Contains(metrics, "\nsessctl_central_lag_records 0\n") {
		t.Errorf("metrics after catching up:\n%s", metrics)
	}

	// SIGKILL A under load, restart it: it resumes where the database is.
	l = startLoad(f, a)
	time.Sleep(time.Second)
	a.kill(t)
	close(l.stop) // the workers' failures now are A being gone
	l.wg.Wait()
	a.start(t)
	mustChat(t, ca, fleetRunnerToken, "after the restart")
	shippedOnce(t, f.pg.DSN, oa, a.caughtUp(t))
	// Again with records certainly not shipped when A dies: PostgreSQL is
	// down meanwhile.
	f.pg.Stop()
	for i := range 10 {
		mustChat(t, ca, fleetRunnerToken, fmt.Sprintf("while PostgreSQL is down %d", i))
	}
	if _, st := a.health(t); st.Lag < 10 {
		t.Fatalf("lag %d before the kill, want at least 10", st.Lag)
	}
	a.kill(t)
	f.pg.Start()
	a.start(t)
	shippedOnce(t, f.pg.DSN, oa, a.caughtUp(t))
	if out, code := runVerifyCentral(t, f.pg.DSN, "--pubkey", ka, "--pubkey", kb); code != 0 {
		t.Fatalf("verify --central after SIGKILL and restart: exit %d\n%s", code, out)
	}

	// Stopped replicas: their shutdown records and final checkpoints are
	// shipped by sessctl ship (retiring a replica), once.
	stopCmd(t, a.cmd)
	stopCmd(t, b.cmd)
	for _, r := range []*replica{a, b} {
		db := filepath.Join(r.data, "sessions.db")
		for range 2 {
			out, code := run(t, sessctlBin, "ship", "--db", db, "--central", f.pg.DSN)
			if code != 0 || !strings.HasPrefix(out, "ok: origin ") {
				t.Fatalf("sessctl ship %s: exit %d: %s", r.name, code, out)
			}
		}
		rd, err := store.OpenReader(db)
		if err != nil {
			t.Fatal(err)
		}
		n, err := rd.Size()
		rd.Close()
		if err != nil {
			t.Fatal(err)
		}
		origin, _ := r.pubkey(t)
		shippedOnce(t, f.pg.DSN, origin, n)
	}
	if out, code := runVerifyCentral(t, f.pg.DSN, "--pubkey", ka, "--pubkey", kb); code != 0 {
		t.Fatalf("verify --central after sessctl ship: exit %d\n%s", code, out)
	}

	// Tampering in PostgreSQL: each case on a copy of the database.
	admin, err := pgx.Connect(context.Background(), f.pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	idOf := func(origin string) int {
		var id int
		if err := admin.QueryRow(context.Background(), `SELECT id FROM sessctl_origins WHERE origin = $1`, origin).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	idA, idB := idOf(oa), idOf(ob)
	if _, err := admin.Exec(context.Background(), `CREATE DATABASE fleet_base TEMPLATE postgres`); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name   string
		sql    string
		origin string
		want   string
	}{
		{"leaf bytes updated", fmt.Sprintf(`UPDATE sessctl_leaves SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), '"kind":"', '"kind":"x'), 'UTF8') WHERE origin_id = %d AND seq = 7`, idA), oa, "record 7: modified"},
		{"row deleted", fmt.Sprintf(`DELETE FROM sessctl_leaves WHERE origin_id = %d AND seq = 4`, idB), ob, "record 4: missing"},
		{"two rows swapped", fmt.Sprintf(`UPDATE sessctl_leaves l SET leaf = o.leaf, leaf_hash = o.leaf_hash FROM sessctl_leaves o
WHERE l.origin_id = %d AND o.origin_id = l.origin_id AND ((l.seq = 10 AND o.seq = 11) OR (l.seq = 11 AND o.seq = 10))`, idA), oa, "record 10: reordered"},
		{"checkpoint changed", fmt.Sprintf(`UPDATE sessctl_checkpoints SET note = (SELECT note FROM sessctl_checkpoints WHERE origin_id = %d ORDER BY size LIMIT 1)
WHERE origin_id = %[1]d AND size = (SELECT max(size) FROM sessctl_checkpoints WHERE origin_id = %[1]d)`, idB), ob, ": checkpoint mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("fleet_tamper_%d", i)
			if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+name+" TEMPLATE fleet_base"); err != nil {
				t.Fatal(err)
			}
			dsn := strings.Replace(f.pg.DSN, "/postgres?", "/"+name+"?", 1)
			conn, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.Exec(context.Background(), tc.sql)
			conn.Close(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			out, code := runVerifyCentral(t, dsn, "--pubkey", ka, "--pubkey", kb)
			if code != 1 || !strings.Contains(out, "origin "+tc.origin+": ") || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want 1 naming origin %s and %q:\n%s", code, tc.origin, tc.want, out)
			}
			// The other origin still verifies.
			other := oa
			if tc.origin == oa {
				other = ob
			}
			if !strings.Contains(out, "ok: origin "+other+": ") {
				t.Fatalf("the untouched origin %s does not verify:\n%s", other, out)
			}
		})
	}
}

// TestVerifyCentralCannotCheck: what keeps verify --central from checking
// exits 2 with the reason.
func TestVerifyCentralCannotCheck(t *testing.T) {
	dead := "postgres://sessctl@127.0.0.1:1/sessctl?sslmode=disable&connect_timeout=2"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{"verify", "--central", dead}, "could not verify"},
		{"bad pubkey", []string{"verify", "--central", dead, "--pubkey", "not-a-key"}, "--pubkey"},
		{"origin key named otherwise", []string{"verify", "--central", dead, "--pubkey", "a/b=c/d+00000000+AAAA"}, "--pubkey"},
		{"with --db", []string{"verify", "--central", dead, "--db", "x.db"}, "leave out --db"},
		{"ship unreachable", []string{"ship", "--central", dead, "--db", "/nonexistent/sessions.db"}, "sessctl ship"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := run(t, sessctlBin, tc.args...)
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want 2 with %q:\n%s", code, tc.want, out)
			}
		})
	}
}
