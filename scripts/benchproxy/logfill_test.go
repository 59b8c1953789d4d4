package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/store"
)

// TestFillLog appends generated records to a real log, copies the data
// directory as a run does, and verifies the copy: every record is there,
// the chain and tree hold, the key stays private, and the records are
// shaped as sessctl writes them for the benchmark's traffic.
func TestFillLog(t *testing.T) {
	tok, err := newTokens()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	const n = 300
	calls := 0
	if err := fillLog(context.Background(), data, n, tok, func(int) { calls++ }); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy")
	if err := copyDataDir(context.Background(), data, cp); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(cp, "log.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copied log key: %v, mode %v", err, fi.Mode())
	}
	rep, err := store.Verify(filepath.Join(cp, "sessions.db"), store.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Records < n+1 { // + genesis (and shutdown)
		t.Fatalf("verify the copy: %v, %+v", err, rep)
	}
	if rep.Bodies != 2*n {
		t.Errorf("%d bodies stored, want %d (full recording)", rep.Bodies, 2*n)
	}
	r, err := store.OpenReader(filepath.Join(cp, "sessions.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var streamed, masked, seen int
	err = r.List(store.Filter{}, func(rec *store.Record) error {
		if rec.Kind != store.KindExchange {
			return nil
		}
		seen++
		if rec.Identity.TokenHash != tok.runnerHash || rec.Host != apiHost || rec.Request == nil || rec.Response == nil {
			t.Errorf("record %d: %+v", rec.Seq, rec)
		}
		if len(rec.Deltas) > 0 {
			streamed++
		}
		if len(rec.SecretHMACs) > 0 {
			masked++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != n || streamed != n/4 || masked != n/100 {
		t.Errorf("%d exchanges, %d streamed, %d with a masked secret; want %d, %d, %d", seen, streamed, masked, n, n/4, n/100)
	}
	if err := copyDataDir(context.Background(), data, cp); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("copy over an existing directory: %v", err)
	}
}
