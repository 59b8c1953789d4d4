package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A forwarded exchange whose in-flight note and record both fail (the
// note queued with BeginQueued, committed with the record or just before
// it) is kept as an aborted record to write once the store can; an
// exchange never noted (a refusal) is not.
func TestOrphansKeptWhenNoteAndRecordFail(t *testing.T) {
	s, files := openClosable(t)
	ctx := context.Background()
	files.closeAll(t) // every later write fails

	together, waited, refused := exchange(2), exchange(3), exchange(4)
	refused.Kind, refused.Outcome = KindRefused, OutcomeUnauthenticated
	// Note and record queued back to back: one batch, or two.
	if _, err := s.BeginQueued(ctx, together); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, together); err == nil {
		t.Fatal("append succeeded on a closed file")
	}
	// The note fails on its own first, then the record.
	wait, err := s.BeginQueued(ctx, waited)
	if err == nil {
		if err := wait(ctx); err == nil {
			t.Fatal("note committed on a closed file")
		}
	}
	if _, err := s.Append(ctx, waited); err == nil {
		t.Fatal("append succeeded on a closed file")
	}
	if _, err := s.Append(ctx, refused); err == nil {
		t.Fatal("append succeeded on a closed file")
	}
	s.Close() // fails too; the appender has stopped, its state is ours
	kept := map[string]*Record{}
	for _, r := range s.orphans {
		kept[r.SessionID] = r
	}
	for _, want := range []*Record{together, waited} {
		r := kept[want.SessionID]
		if r == nil {
			t.Fatalf("forwarded exchange %s not kept", want.SessionID)
		}
		if r.Kind != KindAborted || r.Outcome != OutcomeAborted || !strings.Contains(r.Reason, "could not be written") || r.Extra["outcome_was"] != string(OutcomeForwarded) || r.Request != nil {
			t.Errorf("kept record %+v", r)
		}
	}
	if kept[refused.SessionID] != nil {
		t.Error("a refusal never noted was kept as a forwarded exchange")
	}
}

// openClosable opens a store whose files the test can close under it,
// with one record appended while they work.
func openClosable(t *testing.T) (*Store, *openFiles) {
	t.Helper()
	files := &openFiles{}
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{
		Logger:   quietLogger(),
		openFile: files.open,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), exchange(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Healthy(); err != nil {
		t.Fatal(err)
	}
	return s, files
}

// openFiles opens the files of a store (the database and its journal)
// and can close them under it, so that every later write fails.
type openFiles struct {
	mu    sync.Mutex
	files []*os.File
}

func (o *openFiles) open(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err == nil {
		o.mu.Lock()
		o.files = append(o.files, f)
		o.mu.Unlock()
	}
	return f, err
}

func (o *openFiles) closeAll(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.files) != 2 {
		t.Fatalf("%d files opened, want the database and its journal", len(o.files))
	}
	for _, f := range o.files {
		f.Close()
	}
}
