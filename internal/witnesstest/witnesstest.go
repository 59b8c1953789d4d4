// Package witnesstest runs a real C2SP tlog-witness for tests: litewitness
// from filippo.io/torchwood (pinned in go.mod as a tool), built from the
// module cache, with its Ed25519 key in a dedicated ssh-agent, listening on
// 127.0.0.1. Tests that need it skip when ssh-agent or ssh-keygen is
// missing (.ci/run installs openssh-client).
package witnesstest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/testutil"
)

// Witness is a running litewitness.
type Witness struct {
	// Name is the witness's name (its cosignature key name).
	Name string
	// URL is its submission prefix (http://127.0.0.1:port).
	URL string
	// VKey is its cosignature/v1 verifier key, as litewitness prints it.
	VKey string

	bin, db string
	cmd     *exec.Cmd
	stderr  *testutil.Buffer
}

var build struct {
	once sync.Once
	dir  string
	err  error
}

// binaries builds litewitness and witnessctl once per test process.
func binaries(t testing.TB) string {
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "sessctl-litewitness-")
		if err != nil {
			build.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
			"filippo.io/torchwood/cmd/litewitness", "filippo.io/torchwood/cmd/witnessctl")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("building litewitness: %v\n%s", err, out)
		}
		build.dir = dir
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.dir
}

// Start builds (once) and starts a litewitness named name on a free
// loopback port, with a fresh key and database. It is stopped when the
// test ends.
func Start(t testing.TB, name string) *Witness {
	t.Helper()
	for _, tool := range []string{"ssh-agent", "ssh-add", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (openssh-client): cannot run litewitness", tool)
		}
	}
	bin := binaries(t)
	// A short directory: the agent's socket path has a length limit.
	dir, err := os.MkdirTemp("", "lw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	key := filepath.Join(dir, "key")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key)
	fp := run(t, "ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub")
	fpr := regexp.MustCompile(`SHA256:[A-Za-z0-9+/]+`).FindString(fp)
	if fpr == "" {
		t.Fatalf("no fingerprint in %q", fp)
	}

	sock := filepath.Join(dir, "a.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	agent.Stdout, agent.Stderr = io.Discard, io.Discard
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	waitFor(t, "unix", sock)
	add := exec.Command("ssh-add", key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	w := &Witness{Name: name, URL: "http://" + addr, bin: bin, db: filepath.Join(dir, "w.db"), stderr: &testutil.Buffer{}}
	w.cmd = exec.Command(filepath.Join(bin, "litewitness"), "-db", w.db, "-name", name,
		"-key", fpr, "-ssh-agent", sock, "-listen", addr)
	w.cmd.Stdout, w.cmd.Stderr = w.stderr, w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			w.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("litewitness output:\n%s", w.stderr.String())
		}
	})
	waitFor(t, "tcp", addr)
	deadline := time.Now().Add(10 * time.Second)
	for w.VKey == "" && time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(w.stderr.String()))
		for sc.Scan() {
			if m := regexp.MustCompile(`vkey=(\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				w.VKey = strings.Trim(m[1], `"`)
			}
		}
		if w.VKey == "" {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if w.VKey == "" {
		t.Fatalf("litewitness printed no verifier key:\n%s", w.stderr.String())
	}
	return w
}

// AddLog makes the witness know the log origin with the checkpoint
// verifier key vkey (witnessctl add-log, add-key).
func (w *Witness) AddLog(t testing.TB, origin, vkey string) {
	t.Helper()
	run(t, filepath.Join(w.bin, "witnessctl"), "add-log", "-db", w.db, "-origin", origin)
	run(t, filepath.Join(w.bin, "witnessctl"), "add-key", "-db", w.db, "-origin", origin, "-key", vkey)
}

// Size returns the size of the checkpoint the witness holds for origin
// (witnessctl list-logs), -1 if it does not know the log.
func (w *Witness) Size(t testing.TB, origin string) int64 {
	t.Helper()
	out := run(t, filepath.Join(w.bin, "witnessctl"), "list-logs", "-db", w.db)
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var l struct {
			Origin string `json:"origin"`
			Size   int64  `json:"size"`
		}
		if err := dec.Decode(&l); err != nil {
			return -1
		}
		if l.Origin == origin {
			return l.Size
		}
	}
}

// Output returns what litewitness printed so far.
func (w *Witness) Output() string { return w.stderr.String() }

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func waitFor(t testing.TB, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s did not come up: %v", network, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
