package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// When the database and journal files stop accepting writes, Append
// fails and the store reports itself unhealthy, so the proxy refuses
// traffic.
func TestFailClosedOnWriteError(t *testing.T) {
	s, files := openClosable(t)
	ctx := context.Background()
	files.closeAll(t) // every later write and fsync fails
	if _, err := s.Append(ctx, exchange(2)); err == nil {
		t.Fatal("Append succeeded on a closed file")
	}
	err := s.Healthy()
	if err == nil || !strings.Contains(err.Error(), "store: append") {
		t.Fatalf("Healthy() = %v, want the write error", err)
	}
	if _, err := s.Append(ctx, exchange(3)); err == nil {
		t.Fatal("Append succeeded on a closed file")
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close reported success although the shutdown record could not be written")
	}
}

// An exchange announced with Begin and never appended becomes an aborted
// record at the next Open.
func TestBeginAborted(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	ctx := context.Background()
	done, lost := exchange(1), exchange(2)
	for _, r := range []*Record{done, lost} {
		if err := s.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(ctx, done); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{SigningKeyFile: filepath.Join(filepath.Dir(path), "signing.key"), Logger: quietLogger(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var aborted []*Record
	s.List(Filter{Kind: KindAborted}, func(r *Record) error { aborted = append(aborted, r); return nil })
	if len(aborted) != 1 || aborted[0].SessionID != lost.SessionID || aborted[0].Outcome != OutcomeAborted || aborted[0].Request != nil {
		t.Fatalf("aborted records: %+v", aborted)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Only once.
	s, err = Open(path, Options{SigningKeyFile: filepath.Join(filepath.Dir(path), "signing.key"), Logger: quietLogger(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	s.List(Filter{Kind: KindAborted}, func(*Record) error { n++; return nil })
	s.Close()
	if n != 1 {
		t.Fatalf("%d aborted records after a second reopen", n)
	}
	if rep := mustVerify(t, path, VerifyOptions{}); !rep.OK() {
		t.Fatal(rep.Problems)
	}
}

// BeginQueued hands the in-flight note to the next commit without waiting
// for it: its wait reports the note durable, a record appended after it
// clears it, and a note never followed by its record still becomes an
// aborted record at the next Open — the guarantee Begin gives, with the
// commit off the caller's path.
func TestBeginQueued(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	ctx := context.Background()
	done, lost := exchange(1), exchange(2)
	waitDone, err := s.BeginQueued(ctx, done)
	if err != nil {
		t.Fatal(err)
	}
	waitLost, err := s.BeginQueued(ctx, lost)
	if err != nil {
		t.Fatal(err)
	}
	// The record may be appended before anyone waits for its note.
	if _, err := s.Append(ctx, done); err != nil {
		t.Fatal(err)
	}
	for _, wait := range []func(context.Context) error{waitDone, waitLost} {
		if err := wait(ctx); err != nil {
			t.Fatalf("wait: %v", err)
		}
	}
	if _, err := s.BeginQueued(ctx, &Record{}); err == nil {
		t.Fatal("BeginQueued accepted a record without a session id")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{SigningKeyFile: filepath.Join(filepath.Dir(path), "signing.key"), Logger: quietLogger(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var aborted []*Record
	s.List(Filter{Kind: KindAborted}, func(r *Record) error { aborted = append(aborted, r); return nil })
	if len(aborted) != 1 || aborted[0].SessionID != lost.SessionID {
		t.Fatalf("aborted records: %+v, want exactly the one never appended (%s)", aborted, lost.SessionID)
	}
}
