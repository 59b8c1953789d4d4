// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb and
// pg_ctl in a temporary directory, listening on 127.0.0.1 only, removed
// when the test ends. When the test runs as root (as CI does), the cluster
// runs as an unprivileged user, since PostgreSQL refuses to run as root.
//
// Tests call Start; it skips the test with a message when the PostgreSQL
// server binaries are not installed (Debian: apt-get install postgresql).
package pgtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Server is one running throwaway cluster.
type Server struct {
	// DSN connects to the cluster's postgres database as the superuser.
	DSN string
	// Port is the TCP port on 127.0.0.1.
	Port int

	bin  string // directory holding initdb, pg_ctl
	dir  string // holds data/ and the log
	cred *syscall.Credential
	tb   testing.TB
}

// BinDir finds the directory of the PostgreSQL server binaries: the one
// holding pg_ctl on PATH, else the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "initdb")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("pgtest: PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start initialises and starts a new cluster, and stops and removes it when
// the test ends. It skips the test when PostgreSQL is not installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := BinDir()
	if err != nil {
		tb.Skipf("%v; install Debian's postgresql package to run this test", err)
	}
	dir, err := os.MkdirTemp("", "sessctl-pgtest-")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	s := &Server{bin: bin, dir: dir, tb: tb}
	tb.Cleanup(func() {
		s.stop()
		os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		cred, err := unprivileged()
		if err != nil {
			tb.Fatalf("pgtest: running as root and %v", err)
		}
		s.cred = cred
		// The cluster's user must reach its directory.
		if err := os.Chmod(dir, 0o755); err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if s.cred != nil {
		for _, p := range []string{dir, data} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				tb.Fatalf("pgtest: %v", err)
			}
		}
	}
	if out, err := s.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions", "--no-sync"); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	s.Port = freePort(tb)
	s.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	s.Start()
	return s
}

// Start (re)starts a stopped cluster and waits until it accepts connections.
func (s *Server) Start() {
	s.tb.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
		s.Port, s.dir)
	if out, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		logTail, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		s.tb.Fatalf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, logTail)
	}
}

// Stop stops the cluster (fast shutdown: open connections are closed), so
// a test can see what happens while PostgreSQL is down. Start brings it back
// with its data.
func (s *Server) Stop() {
	s.tb.Helper()
	if out, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		s.tb.Fatalf("pgtest: pg_ctl stop: %v\n%s", err, out)
	}
}

func (s *Server) stop() {
	// Best effort at cleanup: the cluster may already be stopped.
	s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "-t", "30", "stop")
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		return out.Bytes(), fmt.Errorf("%s timed out", name)
	}
}

// unprivileged picks the user a root test runs PostgreSQL as: postgres
// (created by Debian's package), else nobody.
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("no unprivileged user (postgres or nobody) to run PostgreSQL as")
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
