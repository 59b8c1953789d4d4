package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Child processes: the test binary re-executes itself with childEnv set
// to run one of these instead of the tests.
const (
	childEnv   = "SESSCTL_STORE_TEST_CHILD"
	childDBEnv = "SESSCTL_STORE_TEST_DB"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode, os.Getenv(childDBEnv)))
	}
	code := m.Run()
	if bigLog.dir != "" {
		os.RemoveAll(bigLog.dir)
	}
	os.Exit(code)
}

func runChild(mode, path string) int {
	var err error
	switch mode {
	case "crash":
		err = crashChild(path)
	case "diskfull":
		err = diskFullChild(path)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func childOptions(path string) Options {
	return Options{
		SigningKeyFile:     filepath.Join(filepath.Dir(path), "signing.key"),
		CheckpointEvery:    64,
		CheckpointInterval: 20 * time.Millisecond,
		Logger:             quietLogger(),
	}
}

// crashChild appends from 32 goroutines until it is killed, printing
// "ack <seq> <session> ." after each Append returns and
// "begun <session> ." after each Begin returns.
func crashChild(path string) error {
	s, err := Open(path, childOptions(path))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, format, args...)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				r := exchange(g*1_000_000 + i)
				r.SessionID = uuid.Must(uuid.NewV7()).String()
				if i%4 == 0 {
					if err := s.Begin(context.Background(), r); err != nil {
						say("error %v .\n", err)
						return
					}
					say("begun %s .\n", r.SessionID)
				}
				rc, err := s.Append(context.Background(), r)
				if err != nil {
					say("error %v .\n", err)
					return
				}
				say("ack %d %s .\n", rc.Seq, r.SessionID)
			}
		}()
	}
	wg.Wait()
	return errors.New("appenders stopped")
}

// A child appending under load is SIGKILLed at random moments; after each
// kill the log reopens, every acknowledged record is there, every begun
// exchange is either recorded or marked aborted, and the log verifies.
func TestCrashLosesNoAcknowledgedRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "crash.db")
	acked := map[uint64]string{}
	begun := map[string]bool{}
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=crash", childDBEnv+"="+path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		first := make(chan struct{})
		lines := make(chan []string, 1)
		go func() {
			var got []string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if len(got) == 0 {
					close(first)
				}
				got = append(got, sc.Text())
			}
			if len(got) == 0 {
				close(first)
			}
			lines <- got
		}()
		select {
		case <-first:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: child produced nothing; stderr: %s", round, stderr.String())
		}
		time.Sleep(time.Duration(20+rand.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		got := <-lines
		n := 0
		for _, l := range got {
			f := strings.Fields(l)
			switch {
			case len(f) == 4 && f[0] == "ack" && f[3] == ".":
				seq, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					t.Fatalf("bad line %q", l)
				}
				acked[seq] = f[2]
				delete(begun, f[2])
				n++
			case len(f) == 3 && f[0] == "begun" && f[2] == ".":
				begun[f[1]] = true
			case len(f) > 0 && f[0] == "error":
				t.Fatalf("round %d: child: %s", round, l)
			}
		}
		t.Logf("round %d: %d acknowledged records, killed", round, n)

		s, err := Open(path, childOptions(path))
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		for seq, sid := range acked {
			rec, _, _, err := s.Get(strconv.FormatUint(seq, 10))
			if err != nil {
				t.Fatalf("round %d: acknowledged record %d: %v", round, seq, err)
			}
			if rec.SessionID != sid {
				t.Fatalf("round %d: record %d is session %s, acknowledged as %s", round, seq, rec.SessionID, sid)
			}
		}
		for sid := range begun {
			rec, _, _, err := s.Get(sid)
			if err != nil {
				t.Fatalf("round %d: begun exchange %s neither recorded nor aborted: %v", round, sid, err)
			}
			if rec.Kind != KindExchange && rec.Kind != KindAborted {
				t.Fatalf("round %d: begun exchange %s recorded as %s", round, sid, rec.Kind)
			}
			delete(begun, sid)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		rep := mustVerify(t, path, VerifyOptions{})
		if !rep.OK() {
			t.Fatalf("round %d: %v", round, rep.Problems)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no record was acknowledged in any round")
	}
}
