package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/testutil"
)

func TestCheckpointIntervalFileAndHook(t *testing.T) {
	dir := t.TempDir()
	cpFile := filepath.Join(dir, "cp.txt")
	var mu sync.Mutex
	var hooked [][]byte
	s, err := Open(filepath.Join(dir, "s.db"), Options{
		NoSync:             true,
		Logger:             quietLogger(),
		CheckpointEvery:    1000,
		CheckpointInterval: 20 * time.Millisecond,
		CheckpointFile:     cpFile,
		OnCheckpoint: func(b []byte) {
			mu.Lock()
			hooked = append(hooked, b)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.Append(context.Background(), exchange(1))
	if err != nil {
		t.Fatal(err)
	}
	// The interval checkpoint covers the record without another append.
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("a checkpoint covering record %d", rc.Seq), func() bool {
		msg, err := s.LatestCheckpoint()
		if err != nil {
			t.Fatal(err)
		}
		c, err := OpenCheckpoint(msg, s.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if uint64(c.Size) <= rc.Seq {
			return false
		}
		if c.Origin != s.Origin() {
			t.Fatalf("origin %q, want %q", c.Origin, s.Origin())
		}
		return true
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatal(err)
	}
	notes := SplitNotes(data)
	mu.Lock()
	defer mu.Unlock()
	if len(notes) < 2 || len(hooked) != len(notes) {
		t.Fatalf("%d notes in the file, %d hooked", len(notes), len(hooked))
	}
	for i, n := range notes {
		if !bytes.Equal(n, hooked[i]) {
			t.Fatalf("note %d: file %q, hook %q", i, n, hooked[i])
		}
		if _, err := OpenCheckpoint(n, s.PublicKey()); err != nil {
			t.Fatalf("note %d: %v", i, err)
		}
	}
}

func TestSplitNotes(t *testing.T) {
	a := "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAAAAAA\n"
	b := "p\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— p BBBBBBBB\n— q CCCCCCCC\n"
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{a, []string{a}},
		{a + b, []string{a, b}},
		{a + b + a, []string{a, b, a}},
		{a + "\n\n", []string{a}},
		{"\n" + a + "\n" + b + "\n", []string{a, b}},
	}
	for _, tt := range tests {
		var got []string
		for _, n := range SplitNotes([]byte(tt.in)) {
			got = append(got, string(n))
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("SplitNotes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSnapshotVerifiesWhileRunning(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, CheckpointEvery: 3})
	defer s.Close()
	for i := range 10 {
		if _, err := s.Append(context.Background(), exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	snap := filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteSnapshot(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, snap, VerifyOptions{PublicKey: s.PublicKey()})
	if !rep.OK() || rep.Records != 11 || !rep.KeyPinned {
		t.Fatalf("snapshot: %+v", rep)
	}
}

func TestVerifyKeysAndExternalOrigins(t *testing.T) {
	db, cpFile := buildLog(t, 3)
	other, otherCP := buildLog(t, 3)
	rep := mustVerify(t, db, VerifyOptions{})
	if _, err := Verify(db, VerifyOptions{PublicKey: "someone+00000000+AQ=="}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong pinned key: %v", err)
	}
	if r := mustVerify(t, db, VerifyOptions{PublicKey: rep.PublicKey}); !r.OK() || !r.KeyPinned {
		t.Fatalf("pinned key: %+v", r)
	}
	// A checkpoint file with several logs' checkpoints: each log uses its own.
	a, _ := os.ReadFile(cpFile)
	b, _ := os.ReadFile(otherCP)
	both := SplitNotes(append(append([]byte{}, a...), b...))
	for _, p := range []string{db, other} {
		r := mustVerify(t, p, VerifyOptions{Checkpoints: both})
		if !r.OK() || r.External != len(SplitNotes(a)) {
			t.Fatalf("%s: %+v", p, r)
		}
	}
	// Only other logs' checkpoints: cannot check this one.
	if _, err := Verify(db, VerifyOptions{Checkpoints: SplitNotes(b)}); err == nil || !strings.Contains(err.Error(), "no external checkpoint for origin") {
		t.Fatalf("foreign checkpoints: %v", err)
	}
}
