package stepca

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/ca"
)

// TestIntermediateMode: step-ca signs a name-constrained intermediate;
// sessctl mints leaves with it that a client trusting only step-ca's root
// accepts.
func TestIntermediateMode(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	dir := t.TempDir()
	res, err := Enroll(context.Background(), tc.enrollOptions(dir, ModeIntermediate))
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	ic := res.Certificates[0]
	if !ic.IsCA || ic.MaxPathLen != 0 || !ic.MaxPathLenZero {
		t.Errorf("intermediate: CA %v, path length %d (zero %v), want a CA of path length 0", ic.IsCA, ic.MaxPathLen, ic.MaxPathLenZero)
	}
	if got := ic.PermittedDNSDomains; len(got) != 1 || got[0] != "api.openai.com" || !ic.PermittedDNSDomainsCritical {
		t.Errorf("name constraints = %v (critical %v)", got, ic.PermittedDNSDomainsCritical)
	}
	fi, err := os.Stat(filepath.Join(dir, caKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	li, err := LoadIntermediate(dir, ca.LoadOptions{Logger: testLogger()})
	if err != nil {
		t.Fatalf("LoadIntermediate: %v", err)
	}
	addr := tlsServer(t, li.GetCertificate)
	body, chain, err := get(t, addr, "api.openai.com", tc.roots)
	if err != nil {
		t.Fatalf("client trusting only step-ca's root: %v", err)
	}
	if body != "hello from api.openai.com" {
		t.Errorf("body = %q", body)
	}
	if len(chain) != 3 {
		t.Errorf("server sent %d certificates, want leaf, sessctl's and step-ca's intermediates", len(chain))
	}
	if _, err := li.Leaf("www.example.com"); !errors.Is(err, ca.ErrNotIntercepted) {
		t.Errorf("Leaf outside the constraints = %v, want ErrNotIntercepted", err)
	}

	// Plain ca.Load reads the same directory (it sends one certificate less).
	if _, err := ca.Load(dir, ca.LoadOptions{Logger: testLogger()}); err != nil {
		t.Errorf("ca.Load: %v", err)
	}
	if _, err := Enroll(context.Background(), tc.enrollOptions(dir, ModeIntermediate)); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second enrollment without --force = %v, want a refusal", err)
	}
	o := tc.enrollOptions(dir, ModeIntermediate)
	o.Force = true
	if _, err := Enroll(context.Background(), o); err != nil {
		t.Errorf("second enrollment with --force: %v", err)
	}
}

// TestIntermediateRefusals: enrollment refuses what step-ca should not
// have issued or what clients would not accept, and writes nothing.
func TestIntermediateRefusals(t *testing.T) {
	t.Run("not a CA", func(t *testing.T) {
		tc := startStepCA(t, caOptions{})
		dir := t.TempDir()
		o := tc.enrollOptions(dir, ModeIntermediate)
		o.Provisioner = leafProv // default leaf template
		_, err := Enroll(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "not a CA") {
			t.Errorf("err = %v, want 'not a CA'", err)
		}
		assertNoCA(t, dir)
	})
	t.Run("host outside the template's names", func(t *testing.T) {
		tc := startStepCA(t, caOptions{permitted: []string{"api.openai.com"}})
		dir := t.TempDir()
		o := tc.enrollOptions(dir, ModeIntermediate)
		o.Hosts = []string{"api.openai.com", "api.anthropic.com"}
		_, err := Enroll(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "does not permit api.anthropic.com") {
			t.Errorf("err = %v", err)
		}
		assertNoCA(t, dir)
	})
	t.Run("step-ca intermediate of path length 0", func(t *testing.T) {
		tc := startStepCA(t, caOptions{interPathLenZero: true})
		dir := t.TempDir()
		_, err := Enroll(context.Background(), tc.enrollOptions(dir, ModeIntermediate))
		if err == nil || !strings.Contains(err.Error(), "path length 0") {
			t.Errorf("err = %v, want the path length hint", err)
		}
		assertNoCA(t, dir)
	})
}

func assertNoCA(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{caCertFile, caKeyFile, chainFile, enrollmentFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s written after a failed enrollment", f)
		}
	}
}

// TestEnrollErrors: each misconfiguration gets an error that says what
// is wrong, and none quotes the password.
func TestEnrollErrors(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	other := startStepCA(t, caOptions{})
	wrongPW := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrongPW, []byte("not the password"), 0o600)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	readable := filepath.Join(t.TempDir(), "readable")
	os.WriteFile(readable, []byte(testPassword), 0o644)
	down := startStepCA(t, caOptions{})
	down.stop()

	tests := []struct {
		name   string
		modify func(*EnrollOptions)
		want   string
		is     error
	}{
		{"no URL", func(o *EnrollOptions) { o.CAURL = "" }, "--ca-url", nil},
		{"no root", func(o *EnrollOptions) { o.RootFile = "" }, "--root", nil},
		{"no credentials", func(o *EnrollOptions) { o.PasswordFile = "" }, "--password-file", nil},
		{"no provisioner", func(o *EnrollOptions) { o.Provisioner = "" }, "--provisioner", nil},
		{"bad mode", func(o *EnrollOptions) { o.Mode = "root" }, "unknown mode", nil},
		{"bad host", func(o *EnrollOptions) { o.Hosts = []string{"10.0.0.1"} }, "IP address", nil},
		{"missing root file", func(o *EnrollOptions) { o.RootFile = "/nonexistent/root.crt" }, "read root", nil},
		{"empty password", func(o *EnrollOptions) { o.PasswordFile = empty }, "is empty", nil},
		{"readable password file", func(o *EnrollOptions) { o.PasswordFile = readable }, "chmod 600", nil},
		{"wrong password", func(o *EnrollOptions) { o.PasswordFile = wrongPW }, "password is wrong", nil},
		{"unknown provisioner", func(o *EnrollOptions) { o.Provisioner = "nobody" }, "'nobody' not found", nil},
		{"wrong root", func(o *EnrollOptions) { o.RootFile = other.rootFile }, "does not verify with the given root", nil},
		{"step-ca down", func(o *EnrollOptions) { o.CAURL = down.url; o.RootFile = down.rootFile }, "unreachable", ErrUnavailable},
		{"bad token", func(o *EnrollOptions) { o.PasswordFile = ""; o.Token = "not-a-token" }, "not a JWT", nil},
		{"lifetime over the maximum", func(o *EnrollOptions) { o.Lifetime = 48 * 3600e9 }, "HTTP 403", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tc.enrollOptions(t.TempDir(), ModeLeaf)
			tt.modify(&o)
			_, err := Enroll(context.Background(), o)
			if err == nil {
				t.Fatal("Enroll succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.is)
			}
			if strings.Contains(err.Error(), testPassword) || strings.Contains(err.Error(), "not the password") {
				t.Errorf("error quotes a password: %v", err)
			}
		})
	}
}
