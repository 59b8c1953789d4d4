//go:build linux

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// diskFullChild lowers its file size limit (RLIMIT_FSIZE) to the current
// size of the database so writes fail as on a full disk, checks that the
// store fails closed, raises the limit and checks that it recovers.
func diskFullChild(path string) error {
	opts := childOptions(path)
	// The health probe runs once a second with a long interval; a probe
	// that lands between the failed Append and the Healthy check below
	// could find room for its small write and report health already.
	opts.CheckpointInterval = time.Hour
	s, err := Open(path, opts)
	if err != nil {
		return err
	}
	ctx := context.Background()
	for i := range 5 {
		if _, err := s.Append(ctx, exchange(i)); err != nil {
			return err
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		return err
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(fi.Size()), Max: old.Max}); err != nil {
		return err
	}
	big := exchange(100)
	big.ResponseBody = make([]byte, 256<<10)
	failed := false
	for range 200 {
		if _, err := s.Append(ctx, big); err != nil {
			failed = true
			fmt.Println("append failed:", err)
			break
		}
	}
	if !failed {
		return errors.New("appends kept succeeding past the file size limit")
	}
	if s.Healthy() == nil {
		return errors.New("store healthy after a failed write")
	}
	if _, err := s.Append(ctx, exchange(7)); err == nil {
		// A small record may still fit in free pages; that is fine, but
		// then health must be back.
		if s.Healthy() != nil {
			return errors.New("append succeeded while unhealthy")
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Healthy() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("still unhealthy after space returned: %v", s.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("recovered")
	if _, err := s.Append(ctx, big); err != nil {
		return fmt.Errorf("append after recovery: %w", err)
	}
	return s.Close()
}

func TestFailClosedDiskFullAndRecover(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "full.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=diskfull", childDBEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "append failed:") || !strings.Contains(string(out), "recovered") {
		t.Fatalf("child output:\n%s", out)
	}
	t.Logf("child:\n%s", out)
	rep := mustVerify(t, path, VerifyOptions{})
	if !rep.OK() {
		t.Fatal(rep.Problems)
	}
}
