package command

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
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

	"filippo.io/torchwood"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/mod/sumdb/note"

	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/internal/witnesstest"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/witness"
)

// witnessedServe is a `sessctl serve` started with a config file.
type witnessedServe struct {
	cmd           *exec.Cmd
	stderr        *testutil.Buffer
	listen, admin string
	token, adminT string // printed on the first run only
}

func startWitnessedServe(t *testing.T, data, cfg, upAddr, upCA string, firstRun bool) *witnessedServe {
	t.Helper()
	s := &witnessedServe{listen: freeAddr(t), admin: freeAddr(t), stderr: &testutil.Buffer{}}
	s.cmd = exec.Command(sessctlBin, "serve", "--config", cfg, "--listen", s.listen, "--admin_listen", s.admin,
		"--data_dir", data, "--upstream_addr", upAddr, "--upstream_ca_file", upCA)
	s.cmd.Env = append(os.Environ(), "OPENAI_API_KEY="+realKey)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("sessctl serve stderr:\n%s", s.stderr)
		}
	})
	tokens := make(chan [2]string, 1)
	go func() {
		var tok [2]string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if v, ok := strings.CutPrefix(line, "export OPENAI_API_KEY="); ok {
				tok[0] = v
			}
			if _, v, ok := strings.Cut(line, "SESSCTL_ADMIN_TOKEN="); ok {
				tok[1] = v
				tokens <- tok
			}
		}
	}()
	if firstRun {
		select {
		case tok := <-tokens:
			s.token, s.adminT = tok[0], tok[1]
		case <-time.After(30 * time.Second):
			t.Fatalf("no tokens printed; stderr:\n%s", s.stderr)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{s.listen, s.admin} {
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never listened; stderr:\n%s", addr, s.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return s
}

func (s *witnessedServe) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
		t.Errorf("sessctl serve did not stop on SIGTERM")
	}
}

func (s *witnessedServe) get(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.admin+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// appendOffline appends records to a stopped log, as someone with the
// file and the log key can.
func appendOffline(t *testing.T, data string, n int, tag string) {
	t.Helper()
	st, err := store.Open(filepath.Join(data, "sessions.db"), store.Options{SigningKeyFile: filepath.Join(data, "log.key"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := st.Append(context.Background(), &store.Record{Kind: store.KindExchange, Host: "api.openai.com", Path: fmt.Sprintf("/%s/%d", tag, i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWitnessedServe runs `sessctl serve` with a real witness
// (litewitness) on loopback: its checkpoints get cosigned, the log is
// served as tlog-tiles and read by torchwood's client, `verify --quorum 1`
// passes on the stopped log and fails once a checkpoint lacks the
// cosignature; a log rolled back and regrown with the log key is refused by
// the witness, and serve says so in its log, /healthz and /metrics.
func TestWitnessedServe(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	w := witnesstest.Start(t, "witness.test/w1")
	upAddr, upCA := upstreamStandIn(t)
	data := t.TempDir()
	db := filepath.Join(data, "sessions.db")

	// The log exists before the witness is told about it.
	st, err := store.Open(db, store.Options{SigningKeyFile: filepath.Join(data, "log.key"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	origin, logKey := st.Origin(), st.PublicKey()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	w.AddLog(t, origin, logKey)
	genesis, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "sessctl.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("checkpoint_interval: 1s\nwitness_quorum: 1\nwitnesses:\n  - name: w1\n    url: %s\n    vkey: %s\n", w.URL, w.VKey)), 0o600); err != nil {
		t.Fatal(err)
	}

	s := startWitnessedServe(t, data, cfg, upAddr, upCA, true)
	waitUntil(t, "the first cosignature", func() bool { return w.Size(t, origin) > 0 })
	first := w.Size(t, origin)
	out, code := run(t, "curl", "-sS", "--max-time", "20", "--proxy", "http://"+s.listen, "--cacert", filepath.Join(data, "ca", "ca.crt"),
		"-H", "Authorization: Bearer "+s.token, "-H", "Content-Type: application/json",
		"-d", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`,
		"https://api.openai.com/v1/chat/completions")
	if code != 0 || !strings.Contains(out, "hello from upstream") {
		t.Fatalf("curl exit %d: %s", code, out)
	}
	waitUntil(t, "the exchange's checkpoint to be cosigned", func() bool { return w.Size(t, origin) > first })

	if code, body := s.get(t, "/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	_, body := s.get(t, "/metrics", "")
	tp := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := tp.TextToMetricFamilies(strings.NewReader(body)); err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	if !strings.Contains(body, "\nsessctl_witness_fork_total 0\n") ||
		strings.Contains(body, `sessctl_witness_cosignatures_total{witness="w1"} 0`) {
		t.Fatalf("/metrics:\n%s", body)
	}
	// The log over tlog-tiles: admin token needed; the checkpoint is the
	// cosigned one; torchwood's client reads and checks every entry.
	if code, _ := s.get(t, "/log/checkpoint", ""); code != http.StatusUnauthorized {
		t.Fatalf("/log/checkpoint without a token: %d", code)
	}
	// The witness holds the checkpoint a moment before sessctl has stored
	// its answer.
	var cp string
	waitUntil(t, "/log/checkpoint to carry the cosignature", func() bool {
		code, body := s.get(t, "/log/checkpoint", s.adminT)
		cp = body
		return code == 200 && strings.Contains(body, "\n— witness.test/w1 ")
	})
	readTiles(t, "http://"+s.admin+"/log/", s.adminT, logKey, w.VKey)

	s.stop(t)
	// The final checkpoint (written when serve stopped) is cosigned too.
	out, code = run(t, sessctlBin, "verify", "--db", db, "--pubkey", logKey, "--witness-vkey", w.VKey, "--quorum", "1")
	if code != 0 || !strings.Contains(out, "witnessed: checkpoint ") || !strings.Contains(out, "1 of 1 required cosignatures") {
		t.Fatalf("verify --quorum 1: exit %d\n%s", code, out)
	}
	// The same policy from the config file.
	if out, code := run(t, sessctlBin, "verify", "--db", db, "--config", cfg); code != 0 || !strings.Contains(out, "witnessed:") {
		t.Fatalf("verify --config: exit %d\n%s", code, out)
	}
	held := w.Size(t, origin)
	// `sessctl checkpoint` gives the auditor the cosigned checkpoint to
	// keep; verify checks it with --checkpoint.
	kept, code := run(t, sessctlBin, "checkpoint", "--db", db)
	if code != 0 || !strings.Contains(kept, "\n— witness.test/w1 ") {
		t.Fatalf("checkpoint: exit %d\n%s", code, kept)
	}
	keptFile := filepath.Join(t.TempDir(), "kept.txt")
	os.WriteFile(keptFile, []byte(kept), 0o644)
	out, code = run(t, sessctlBin, "verify", "--db", db, "--checkpoint", keptFile, "--pubkey", logKey, "--witness-vkey", w.VKey, "--quorum", "1")
	if code != 0 || strings.Count(out, "witnessed: ") != 2 || !strings.Contains(out, "witnessed: --checkpoint ") {
		t.Fatalf("verify --checkpoint kept --quorum 1: exit %d\n%s", code, out)
	}

	// A record with its proof in C2SP tlog-proof form, checked by anyone
	// holding the log key and the witness key.
	proofFile := filepath.Join(t.TempDir(), "1.tlog-proof")
	if out, code := run(t, sessctlBin, "proof", "--db", db, "--format", "c2sp", "--out", proofFile, "1"); code != 0 {
		t.Fatalf("proof --format c2sp: exit %d\n%s", code, out)
	}
	pf, _ := os.ReadFile(proofFile)
	if !strings.HasPrefix(string(pf), "c2sp.org/tlog-proof@v1\nextra ") || !strings.Contains(string(pf), "\n— witness.test/w1 ") {
		t.Fatalf("proof:\n%s", pf)
	}
	out, code = run(t, sessctlBin, "verify", "--proof", proofFile, "--pubkey", logKey, "--witness-vkey", w.VKey, "--quorum", "1")
	if code != 0 || !strings.HasPrefix(out, "ok: record 1 is in the log ") || !strings.Contains(out, "1 of 1 required cosignatures") {
		t.Fatalf("verify --proof (c2sp): exit %d\n%s", code, out)
	}
	// The same proof with the cosignature cut off fails the quorum.
	cut := regexp.MustCompile(`(?m)^— witness\.test/w1 .*\n`).ReplaceAll(pf, nil)
	os.WriteFile(proofFile, cut, 0o644)
	if out, code := run(t, sessctlBin, "verify", "--proof", proofFile, "--pubkey", logKey, "--witness-vkey", w.VKey, "--quorum", "1"); code != 1 || !strings.Contains(out, "missing from witness.test/w1") {
		t.Fatalf("verify --proof without the cosignature: exit %d\n%s", code, out)
	}

	// A checkpoint the witness never saw fails the quorum.
	appendOffline(t, data, 3, "offline")
	out, code = run(t, sessctlBin, "verify", "--db", db, "--witness-vkey", w.VKey, "--quorum", "1")
	if code != 1 || !strings.Contains(out, "0 of 1 required cosignatures (missing from witness.test/w1)") {
		t.Fatalf("verify --quorum 1 on an uncosigned checkpoint: exit %d\n%s", code, out)
	}
	// So does the --checkpoint one: the checkpoint file holds bare notes.
	bare := filepath.Join(t.TempDir(), "cp.txt")
	os.WriteFile(bare, []byte(strings.SplitAfter(cp, "\n\n")[0]+strings.SplitAfter(strings.SplitAfter(cp, "\n\n")[1], "\n")[0]), 0o644)
	out, code = run(t, sessctlBin, "verify", "--db", db, "--checkpoint", bare, "--witness-vkey", w.VKey, "--quorum", "1")
	if code != 1 || !strings.Contains(out, "required cosignatures") {
		t.Fatalf("verify --checkpoint bare --quorum 1: exit %d\n%s", code, out)
	}
	// A malformed witness key is a usage error.
	if out, code := run(t, sessctlBin, "verify", "--db", db, "--witness-vkey", "nope", "--quorum", "1"); code != 2 {
		t.Fatalf("bad --witness-vkey: exit %d\n%s", code, out)
	}

	// Roll back to the genesis file and grow another history, signed
	// with the log key, past what the witness holds.
	if err := os.WriteFile(db, genesis, 0o600); err != nil {
		t.Fatal(err)
	}
	appendOffline(t, data, int(held)+5, "forked")
	s = startWitnessedServe(t, data, cfg, upAddr, upCA, false)
	waitUntil(t, "serve to report the fork", func() bool {
		code, _ := s.get(t, "/healthz", "")
		return code == http.StatusServiceUnavailable
	})
	_, health := s.get(t, "/healthz", "")
	if !strings.Contains(health, "fork") || !strings.Contains(health, "w1") {
		t.Fatalf("/healthz: %s", health)
	}
	if _, body := s.get(t, "/metrics", ""); !strings.Contains(body, "\nsessctl_witness_fork_total 1\n") {
		t.Fatalf("/metrics after the fork:\n%s", body)
	}
	if !strings.Contains(s.stderr.String(), "LOG FORK OR ROLLBACK") {
		t.Fatalf("no loud log line; stderr:\n%s", s.stderr)
	}
	if got := w.Size(t, origin); got != held {
		t.Fatalf("the witness moved from %d to %d", held, got)
	}
}

// readTiles reads the whole log at base with torchwood's tlog-tiles
// client, against the checkpoint checked with the log key and the
// witness's cosignature.
func readTiles(t *testing.T, base, token, logKey, witnessKey string) {
	t.Helper()
	ctx := context.Background()
	hc := &http.Client{Transport: bearer{token}, Timeout: 10 * time.Second}
	f, err := torchwood.NewTileFetcher(base, torchwood.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	cpb, err := f.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	lv, err := note.NewVerifier(logKey)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := witness.NewVerifier(witnessKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cpb, note.VerifierList(lv, wv))
	if err != nil || len(n.Sigs) != 2 {
		t.Fatalf("checkpoint: %v, %d verified signatures", err, len(n.Sigs))
	}
	cp, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil {
		t.Fatal(err)
	}
	c, err := torchwood.NewClient(f)
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	for got < cp.N {
		before := got
		for i, e := range c.Entries(ctx, cp.Tree, got) {
			rec, err := store.DecodeLeaf(e)
			if err != nil || int64(rec.Seq) != i {
				t.Fatalf("entry %d: %v", i, err)
			}
			got = i + 1
		}
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
		if got == before {
			t.Fatalf("no progress at %d of %d", got, cp.N)
		}
	}
}

type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return (&http.Transport{Proxy: nil}).RoundTrip(r)
}
