package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/internal/pgtest"
	"github.com/sessctl/sessctl/internal/testutil"
)

func TestFleetSessionKey(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = dir

	// Without session_key_file: DATA_DIR/session.key, created.
	k, err := fleetSessionKey(cfg)
	if err != nil || len(k) == 0 {
		t.Fatalf("default key: %d bytes, %v", len(k), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "session.key")); err != nil {
		t.Fatalf("default key file: %v", err)
	}

	// session_key_file must exist: a key made here would be this replica's alone.
	cfg.SessionKeyFile = filepath.Join(dir, "shared.key")
	if _, err := fleetSessionKey(cfg); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing session_key_file: %v", err)
	}
	if _, err := os.Stat(cfg.SessionKeyFile); err == nil {
		t.Fatal("a missing session_key_file was created")
	}
	shared := bytes.Repeat([]byte{7}, 32)
	if err := os.WriteFile(cfg.SessionKeyFile, shared, 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := fleetSessionKey(cfg); err != nil || !bytes.Equal(k, shared) {
		t.Fatalf("shared key: %v", err)
	}
	// Readable by others: refused.
	if err := os.Chmod(cfg.SessionKeyFile, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := fleetSessionKey(cfg); err == nil {
		t.Fatal("a group-readable session_key_file was accepted")
	}
}

// TestRetentionKeepsUnshippedBodies: with central_dsn, retention prunes
// only bodies already in PostgreSQL; while PostgreSQL is down the replica
// serves and keeps them.
func TestRetentionKeepsUnshippedBodies(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Stop()
	cfg := testConfig(t)
	now := time.Now()
	seed(t, cfg, exchange("old", now.Add(-72*time.Hour)), exchange("recent", now.Add(-time.Hour)))
	cfg.Retention.Bodies = config.Duration(24 * time.Hour)
	cfg.CentralDSN = pg.DSN
	s, logs := start(t, cfg, func(s *server) { s.pruneEvery = 20 * time.Millisecond })

	bodyOf := func(id string) []byte {
		t.Helper()
		_, req, _, err := s.store.Get(id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		return req
	}
	testutil.WaitFor(t, 10*time.Second, "the shipper to fail", func() bool { return logs.count("shipping to PostgreSQL failed") > 0 })
	time.Sleep(200 * time.Millisecond) // ten prune rounds
	if string(bodyOf("old")) != "prompt of old" {
		t.Fatal("an unshipped body was pruned")
	}
	if st := s.fleet.r.Shipper.Status(); st.Lag == 0 || st.Known {
		t.Fatalf("status while PostgreSQL is down: %+v", st)
	}

	pg.Start()
	testutil.WaitFor(t, 60*time.Second, "the old body to be pruned once shipped", func() bool { return bodyOf("old") == nil })
	if string(bodyOf("recent")) != "prompt of recent" {
		t.Fatal("a recent body was pruned")
	}
	// The pruned body is in PostgreSQL.
	db, err := central.Open(context.Background(), pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var body []byte
	if err := db.Pool.QueryRow(context.Background(), `SELECT b.body FROM sessctl_bodies b JOIN sessctl_leaves l USING (origin_id, seq)
WHERE l.session_id = 'old' AND b.part = 'request'`).Scan(&body); err != nil || string(body) != "prompt of old" {
		t.Fatalf("the pruned body in PostgreSQL: %q, %v", body, err)
	}
}
