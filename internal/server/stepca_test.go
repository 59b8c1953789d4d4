//go:build !nostepca

package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/ca/stepca"
)

func TestOpenStepCA(t *testing.T) {
	dir := t.TempDir()
	if _, _, ok, err := openStepCA(dir, ca.LoadOptions{}); ok || err != nil {
		t.Fatalf("openStepCA(not enrolled) = ok %v, %v; want not ok, no error", ok, err)
	}
	// A leaf-mode enrollment opens without contacting step-ca.
	if err := ca.Init(filepath.Join(dir, "root"), ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := os.ReadFile(filepath.Join(dir, "root", "ca.crt"))
	os.WriteFile(filepath.Join(dir, "root.crt"), rootPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "stepca.json"), []byte(`{"mode":"leaf","ca_url":"https://127.0.0.1:1","hosts":["api.openai.com"]}`), 0o644)
	certs, closer, ok, err := openStepCA(dir, ca.LoadOptions{})
	if err != nil || !ok {
		t.Fatalf("openStepCA(leaf) = ok %v, %v", ok, err)
	}
	defer closer.Close()
	if _, isLeaves := certs.(*stepca.Leaves); !isLeaves {
		t.Errorf("openStepCA(leaf) = %T, want *stepca.Leaves", certs)
	}
}
