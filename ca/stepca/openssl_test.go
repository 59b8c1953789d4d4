package stepca

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sessctl/sessctl/ca"
)

// TestOpenSSLStrict checks the chains a client gets in both modes with
// "openssl verify -x509_strict", trusting only step-ca's root.
func TestOpenSSLStrict(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	tc := startStepCA(t, caOptions{})

	leafDir := t.TempDir()
	if _, err := Enroll(context.Background(), tc.enrollOptions(leafDir, ModeLeaf)); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLeaves(leafDir, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	leafChain, err := l.Certificate(context.Background(), DefaultHost)
	if err != nil {
		t.Fatal(err)
	}

	interDir := t.TempDir()
	if _, err := Enroll(context.Background(), tc.enrollOptions(interDir, ModeIntermediate)); err != nil {
		t.Fatal(err)
	}
	li, err := LoadIntermediate(interDir, ca.LoadOptions{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	minted, err := li.Leaf(DefaultHost)
	if err != nil {
		t.Fatal(err)
	}

	for name, chain := range map[string][][]byte{"leaf mode": leafChain.Certificate, "intermediate mode": minted.Certificate} {
		dir := t.TempDir()
		leaf, untrusted := filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "untrusted.pem")
		os.WriteFile(leaf, encodeCerts(chain[:1]), 0o644)
		os.WriteFile(untrusted, encodeCerts(chain[1:]), 0o644)
		out, err := exec.Command("openssl", "verify", "-x509_strict", "-purpose", "sslserver",
			"-verify_hostname", DefaultHost, "-CAfile", tc.rootFile, "-untrusted", untrusted, leaf).CombinedOutput()
		if err != nil {
			t.Errorf("%s: openssl verify -x509_strict: %v\n%s", name, err, out)
		}
	}
}
