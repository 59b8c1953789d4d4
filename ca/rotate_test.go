package ca

import (
	"bytes"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// countPEM counts the certificates in a PEM bundle.
func countPEM(b []byte) int {
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return n
		}
		n++
	}
}

func TestRotationKeepsRunnersWorking(t *testing.T) {
	dir, a := newTestCA(t, InitOptions{}, LoadOptions{})
	addr := startServer(t, a.GetCertificate)
	oldOnly := rootPool(t, a.CertPEM())
	oldCA := a.Certificate()

	if _, err := get(oldOnly, "api.openai.com", addr); err != nil {
		t.Fatalf("before rotation: %v", err)
	}

	// Rotate: the next CA joins the bundle; minting does not change yet.
	if err := Rotate(dir, InitOptions{}); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if err := a.Reload(); err != nil {
		t.Fatalf("Reload after rotate: %v", err)
	}
	if !a.Certificate().Equal(oldCA) {
		t.Fatal("rotation switched the minting CA before promotion")
	}
	bundle := a.CertPEM()
	if n := countPEM(bundle); n != 2 {
		t.Fatalf("bundle after rotate has %d certificates, want 2", n)
	}
	exported, err := Bundle(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(exported, bundle) {
		t.Error("Bundle and CertPEM differ")
	}
	both := rootPool(t, bundle)
	if _, err := get(both, "api.openai.com", addr); err != nil {
		t.Errorf("after rotate, client trusting the bundle: %v", err)
	}
	if _, err := get(oldOnly, "api.openai.com", addr); err != nil {
		t.Errorf("after rotate, client trusting only the current CA: %v", err)
	}
	leafBefore, _ := a.Leaf("api.openai.com")

	// Promote: minting switches, cached leaves are re-minted.
	retire := time.Now().Add(time.Hour)
	if err := Promote(dir, retire); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if err := a.Reload(); err != nil {
		t.Fatalf("Reload after promote: %v", err)
	}
	newCA := a.Certificate()
	if newCA.Equal(oldCA) {
		t.Fatal("promotion did not switch the minting CA")
	}
	if a.Stats().Cached != 0 {
		t.Error("cache not purged after promotion")
	}
	leafAfter, err := a.Leaf("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if leafAfter == leafBefore {
		t.Fatal("leaf not re-minted after promotion")
	}
	if err := leafAfter.Leaf.CheckSignatureFrom(newCA); err != nil {
		t.Fatalf("new leaf not signed by the promoted CA: %v", err)
	}
	if _, err := get(both, "api.openai.com", addr); err != nil {
		t.Errorf("after promote, client trusting the bundle: %v", err)
	}
	if _, err := get(oldOnly, "api.openai.com", addr); err == nil {
		t.Error("after promote, a client trusting only the old CA still connects")
	}

	// The old CA stays in the bundle until its retirement date.
	if n := countPEM(a.CertPEM()); n != 2 {
		t.Errorf("bundle after promote has %d certificates, want 2 (new + old)", n)
	}
	later, err := Bundle(dir, retire.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if n := countPEM(later); n != 1 {
		t.Errorf("bundle after retirement has %d certificates, want 1", n)
	}
	if !bytes.Equal(later, certPEM(newCA)) {
		t.Error("bundle after retirement is not the promoted CA")
	}
	if _, err := get(rootPool(t, later), "api.openai.com", addr); err != nil {
		t.Errorf("client trusting the retired-era bundle: %v", err)
	}

	// A second promotion is refused while the old CA is in its window.
	if err := Rotate(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Promote(dir, time.Now()); err == nil || !strings.Contains(err.Error(), "still holds the previous CA") {
		t.Fatalf("second Promote in the window: err = %v", err)
	}
}

func TestRotateAndPromoteErrors(t *testing.T) {
	quiet := LoadOptions{Logger: slog.New(slog.DiscardHandler)}
	t.Run("rotate without a CA", func(t *testing.T) {
		if err := Rotate(t.TempDir(), InitOptions{}); err == nil {
			t.Fatal("Rotate in an empty directory succeeded")
		}
	})
	t.Run("promote without rotate", func(t *testing.T) {
		dir, _ := newTestCA(t, InitOptions{}, quiet)
		if err := Promote(dir, time.Now()); err == nil || !strings.Contains(err.Error(), "run sessctl ca rotate first") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("rotate twice", func(t *testing.T) {
		dir, _ := newTestCA(t, InitOptions{}, quiet)
		if err := Rotate(dir, InitOptions{}); err != nil {
			t.Fatal(err)
		}
		first, _ := os.ReadFile(filepath.Join(dir, nextDir, certFile))
		if err := Rotate(dir, InitOptions{}); err == nil || !strings.Contains(err.Error(), "already pending") {
			t.Fatalf("second Rotate: err = %v", err)
		}
		if err := Rotate(dir, InitOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		second, _ := os.ReadFile(filepath.Join(dir, nextDir, certFile))
		if bytes.Equal(first, second) {
			t.Error("Rotate with Force kept the pending CA")
		}
	})
	t.Run("rotate inherits hosts and lifetime", func(t *testing.T) {
		dir, a := newTestCA(t, InitOptions{Hosts: []string{"api.openai.com", "files.openai.com"}, Validity: 90 * 24 * time.Hour}, quiet)
		if err := Rotate(dir, InitOptions{}); err != nil {
			t.Fatal(err)
		}
		next, err := readCert(filepath.Join(dir, nextDir, certFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(next.PermittedDNSDomains, ",") != strings.Join(a.Certificate().PermittedDNSDomains, ",") {
			t.Errorf("next CA permits %v, want %v", next.PermittedDNSDomains, a.Certificate().PermittedDNSDomains)
		}
		if d := next.NotAfter.Sub(next.NotBefore); d != 90*24*time.Hour+caBackdate {
			t.Errorf("next CA lifetime %v", d)
		}
		if next.Subject.CommonName == a.Certificate().Subject.CommonName {
			t.Error("next CA has the same subject name as the current one")
		}
	})
	t.Run("rotate with new hosts", func(t *testing.T) {
		dir, _ := newTestCA(t, InitOptions{}, quiet)
		if err := Rotate(dir, InitOptions{Hosts: []string{"api.openai.com", "files.openai.com"}}); err != nil {
			t.Fatal(err)
		}
		if err := Promote(dir, time.Now()); err != nil {
			t.Fatal(err)
		}
		a, err := Load(dir, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Leaf("files.openai.com"); err != nil {
			t.Fatalf("Leaf for a host added at rotation: %v", err)
		}
	})
	t.Run("loose next key refused by Load", func(t *testing.T) {
		dir, _ := newTestCA(t, InitOptions{}, quiet)
		if err := Rotate(dir, InitOptions{}); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, nextDir, keyFile), 0o644)
		if _, err := Load(dir, quiet); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("Load with a 0644 next key: err = %v", err)
		}
	})
	t.Run("retired old is replaced", func(t *testing.T) {
		dir, _ := newTestCA(t, InitOptions{}, quiet)
		for i := range 2 {
			if err := Rotate(dir, InitOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := Promote(dir, time.Now().Add(-time.Second)); err != nil {
				t.Fatalf("promotion %d: %v", i, err)
			}
		}
		b, err := Bundle(dir, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n := countPEM(b); n != 1 {
			t.Errorf("bundle has %d certificates, want 1", n)
		}
	})
	t.Run("reload keeps serving on error", func(t *testing.T) {
		dir, a := newTestCA(t, InitOptions{}, quiet)
		before := a.Certificate()
		os.WriteFile(filepath.Join(dir, certFile), []byte("garbage"), 0o644)
		if err := a.Reload(); err == nil {
			t.Fatal("Reload of a corrupt CA succeeded")
		}
		if !a.Certificate().Equal(before) {
			t.Fatal("failed Reload changed the CA")
		}
		if _, err := a.Leaf("api.openai.com"); err != nil {
			t.Fatalf("Leaf after failed Reload: %v", err)
		}
	})
}
