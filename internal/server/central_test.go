package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/config"
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
