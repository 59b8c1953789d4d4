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
	// Exchanges announced with Begin (forwarded, as far as the store
	// knows) before the disk fills.
	var begun []*Record
	for i := range 20 {
		r := exchange(300 + i)
		r.ResponseBody = make([]byte, 256<<10)
		if err := s.Begin(ctx, r); err != nil {
			return err
		}
		begun = append(begun, r)
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
	failed := ""
	for _, r := range begun {
		if _, err := s.Append(ctx, r); err != nil {
			failed = r.SessionID
			fmt.Println("append failed:", err)
			break
		}
	}
	if failed == "" {
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
	// The forwarded exchange whose record failed is in the log now, as
	// aborted with the true reason, not only at the next start.
	if err := checkAborted(s, failed, "could not be written"); err != nil {
		return err
	}
	if _, err := s.Append(ctx, big); err != nil {
		return fmt.Errorf("append after recovery: %w", err)
	}
	if err := s.Close(); err != nil {
		return err
	}
	// Reopening adds no second aborted record for it.
	s, err = Open(path, childOptions(path))
	if err != nil {
		return err
	}
	if err := checkAborted(s, failed, "could not be written"); err != nil {
		return err
	}
	fmt.Println("aborted record written on recovery")
	return s.Close()
}

// checkAborted requires exactly one aborted record for session, with a
// reason containing want.
func checkAborted(s *Store, session, want string) error {
	var got []*Record
	if err := s.List(Filter{Kind: KindAborted}, func(r *Record) error {
		if r.SessionID == session {
			got = append(got, r)
		}
		return nil
	}); err != nil {
		return err
	}
	if len(got) != 1 || !strings.Contains(got[0].Reason, want) || got[0].Extra["outcome_was"] != string(OutcomeForwarded) {
		return fmt.Errorf("aborted records for %s: %d %+v", session, len(got), got)
	}
	return nil
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
	if !strings.Contains(string(out), "append failed:") || !strings.Contains(string(out), "recovered") || !strings.Contains(string(out), "aborted record written on recovery") {
		t.Fatalf("child output:\n%s", out)
	}
	t.Logf("child:\n%s", out)
	rep := mustVerify(t, path, VerifyOptions{})
	if !rep.OK() {
		t.Fatal(rep.Problems)
	}
}
