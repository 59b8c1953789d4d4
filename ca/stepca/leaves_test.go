package stepca

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLeafModeHandshake enrolls in leaf mode with a password file and has
// a client that trusts only step-ca's root make an HTTPS request to a
// server using the certificates.
func TestLeafModeHandshake(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	dir := t.TempDir()
	o := tc.enrollOptions(dir, ModeLeaf)
	o.Hosts = []string{"api.openai.com", "API.example.test."}
	res, err := Enroll(context.Background(), o)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if len(res.Certificates) != 2 || res.Hosts[1] != "api.example.test" {
		t.Fatalf("Enroll = %+v, want two certificates for the normalized hosts", res)
	}
	e, err := ReadEnrollment(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e.Mode != ModeLeaf || e.CAURL != tc.url || e.Provisioner != leafProv || !filepath.IsAbs(e.PasswordFile) {
		t.Errorf("enrollment = %+v", e)
	}
	data, _ := os.ReadFile(filepath.Join(dir, enrollmentFile))
	if strings.Contains(string(data), testPassword) {
		t.Error("stepca.json holds the password")
	}
	for _, h := range res.Hosts {
		fi, err := os.Stat(filepath.Join(dir, leavesDir, h+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s.pem has mode %v, want 0600", h, fi.Mode().Perm())
		}
	}

	l, err := OpenLeaves(dir, testLogger())
	if err != nil {
		t.Fatalf("OpenLeaves: %v", err)
	}
	defer l.Close()
	addr := tlsServer(t, l.GetCertificate)
	for _, h := range res.Hosts {
		body, chain, err := get(t, addr, h, tc.roots)
		if err != nil {
			t.Fatalf("GET via %s: %v", h, err)
		}
		if body != "hello from "+h {
			t.Errorf("body = %q", body)
		}
		if got := chain[0].DNSNames; len(got) != 1 || got[0] != h {
			t.Errorf("leaf names = %v, want [%s]", got, h)
		}
		if len(chain) != 2 {
			t.Errorf("server sent %d certificates, want leaf and step-ca's intermediate", len(chain))
		}
	}
	// Restarted, it served the kept certificates without asking step-ca.
	if s := l.Stats(); s.Issued != 0 || s.Certificates != 2 {
		t.Errorf("Stats after restart = %+v, want 0 issued, 2 certificates", s)
	}
	if _, _, err := get(t, addr, "other.example.test", tc.roots); err == nil {
		t.Error("handshake for a host not enrolled succeeded")
	}
	if _, err := l.Certificate(context.Background(), "other.example.test"); !errors.Is(err, ErrNotIntercepted) {
		t.Errorf("Certificate(other) = %v, want ErrNotIntercepted", err)
	}
}

// TestLeafStepCADown: with step-ca stopped, a restarted sessctl serves
// the certificates it kept, a new host gets a clear error, and a failed
// renewal leaves the current certificate serving.
func TestLeafStepCADown(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	dir := t.TempDir()
	o := tc.enrollOptions(dir, ModeLeaf)
	o.Hosts = []string{"api.openai.com"}
	if _, err := Enroll(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	// Add a host that has no certificate yet.
	e, _ := ReadEnrollment(dir)
	e.Hosts = append(e.Hosts, "new.example.test")
	if err := writeEnrollment(dir, e); err != nil {
		t.Fatal(err)
	}
	tc.stop()

	l, err := OpenLeaves(dir, testLogger())
	if err != nil {
		t.Fatalf("OpenLeaves with step-ca down: %v", err)
	}
	defer l.Close()
	addr := tlsServer(t, l.GetCertificate)
	_, before, err := get(t, addr, "api.openai.com", tc.roots)
	if err != nil {
		t.Fatalf("kept certificate does not serve with step-ca down: %v", err)
	}

	_, err = l.Certificate(context.Background(), "new.example.test")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.url) {
		t.Errorf("new host with step-ca down: err = %v, want ErrUnavailable naming %s", err, tc.url)
	}
	if _, _, err := get(t, addr, "new.example.test", tc.roots); err == nil {
		t.Error("handshake for a host without certificate succeeded with step-ca down")
	}

	err = l.Renew(context.Background(), "api.openai.com")
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Renew with step-ca down = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), testPassword) {
		t.Error("error quotes the password")
	}
	_, after, err := get(t, addr, "api.openai.com", tc.roots)
	if err != nil {
		t.Fatalf("current certificate stopped serving after a failed renewal: %v", err)
	}
	if before[0].SerialNumber.Cmp(after[0].SerialNumber) != 0 {
		t.Error("certificate changed though renewal failed")
	}
	if s := l.Stats(); s.Failures < 3 || s.Renewals != 0 {
		t.Errorf("Stats = %+v, want ≥3 failures (two for the new host, one renewal), no renewal", s)
	}

	// step-ca is back: the next attempt succeeds.
	tc.start()
	if err := l.Renew(context.Background(), "api.openai.com"); err != nil {
		t.Fatalf("Renew with step-ca back: %v", err)
	}
	_, renewed, err := get(t, addr, "api.openai.com", tc.roots)
	if err != nil {
		t.Fatal(err)
	}
	if renewed[0].SerialNumber.Cmp(before[0].SerialNumber) == 0 {
		t.Error("certificate did not change after a successful renewal")
	}
	if s := l.Stats(); s.Renewals != 1 {
		t.Errorf("Stats = %+v, want 1 renewal", s)
	}
}

// TestLeafRenewsBeforeExpiry: with a short lifetime the background
// scheduler replaces the certificate before it expires.
func TestLeafRenewsBeforeExpiry(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	l, err := NewLeaves(Config{
		CAURL: tc.url, Roots: tc.roots, Dir: t.TempDir(), Hosts: []string{"api.openai.com"},
		Lifetime: 6 * time.Second, Provisioner: leafProv, Password: []byte(testPassword),
		Timeout: 5 * time.Second, Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first, err := l.Certificate(context.Background(), "api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	at, ok := l.NextRenewal("api.openai.com")
	if !ok {
		t.Fatal("no renewal scheduled")
	}
	if frac := float64(at.Sub(first.Leaf.NotBefore)) / float64(life); frac < 2.0/3-renewJitter-0.01 || frac > 2.0/3+renewJitter+0.01 {
		t.Errorf("renewal scheduled at %.2f of the lifetime, want 2/3 ± jitter", frac)
	}
	deadline := time.Now().Add(30 * time.Second)
	for l.Stats().Renewals == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// Renewals counts only replacements of a certificate still valid.
	if s := l.Stats(); s.Renewals == 0 || s.Issued != 1 {
		t.Fatalf("Stats = %+v, want a renewal before expiry and one issuance", s)
	}
	second, err := l.Certificate(context.Background(), "api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("certificate not replaced")
	}
	if !second.Leaf.NotBefore.Before(first.Leaf.NotAfter) {
		t.Errorf("new certificate starts %v, after the old one expired %v", second.Leaf.NotBefore, first.Leaf.NotAfter)
	}
}

// TestLeafTokenMode enrolls with a one-time token only: the token's host
// gets a certificate, renewal goes through step-ca's /renew with the
// certificate itself, and other hosts get a clear error.
func TestLeafTokenMode(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	dir := t.TempDir()
	tok := tc.token("api.openai.com")
	o := EnrollOptions{CAURL: tc.url, RootFile: tc.rootFile, Dir: dir, Token: tok, Timeout: 5 * time.Second, Logger: testLogger()}
	res, err := Enroll(context.Background(), o)
	if err != nil {
		t.Fatalf("Enroll with token: %v", err)
	}
	if len(res.Hosts) != 1 || res.Hosts[0] != "api.openai.com" {
		t.Fatalf("hosts = %v, want the token's", res.Hosts)
	}
	data, _ := os.ReadFile(filepath.Join(dir, enrollmentFile))
	if strings.Contains(string(data), tok) {
		t.Error("stepca.json holds the token")
	}

	// The token is spent: a second enrollment with it fails, and says so
	// without quoting it.
	_, err = Enroll(context.Background(), EnrollOptions{CAURL: tc.url, RootFile: tc.rootFile, Dir: t.TempDir(), Token: tok, Logger: testLogger()})
	if err == nil || strings.Contains(err.Error(), tok) {
		t.Errorf("reused token: err = %v, want an error that does not quote the token", err)
	}

	l, err := OpenLeaves(dir, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before, err := l.Certificate(context.Background(), "api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(context.Background(), "api.openai.com"); err != nil {
		t.Fatalf("Renew with the certificate (mTLS): %v", err)
	}
	after, err := l.Certificate(context.Background(), "api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if after.Leaf.SerialNumber.Cmp(before.Leaf.SerialNumber) == 0 {
		t.Error("renewal returned the same certificate")
	}
	addr := tlsServer(t, l.GetCertificate)
	if _, _, err := get(t, addr, "api.openai.com", tc.roots); err != nil {
		t.Errorf("handshake with the renewed certificate: %v", err)
	}

	o2 := EnrollOptions{CAURL: tc.url, RootFile: tc.rootFile, Dir: t.TempDir(), Token: tc.token("api.openai.com"),
		Hosts: []string{"api.openai.com", "other.example.test"}, Logger: testLogger()}
	if _, err := Enroll(context.Background(), o2); err == nil || !strings.Contains(err.Error(), "other.example.test") {
		t.Errorf("token for one host, two hosts: err = %v, want one naming the uncovered host", err)
	}
}

// TestLeafConcurrentFirstHandshakes: many handshakes for a host without a
// certificate ask step-ca once.
func TestLeafConcurrentFirstHandshakes(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	l, err := NewLeaves(Config{
		CAURL: tc.url, Roots: tc.roots, Dir: t.TempDir(), Hosts: []string{"api.openai.com"},
		Provisioner: leafProv, Password: []byte(testPassword), Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := tlsServer(t, l.GetCertificate)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := get(t, addr, "api.openai.com", tc.roots)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if s := l.Stats(); s.Issued != 1 {
		t.Errorf("Stats = %+v, want exactly one certificate obtained", s)
	}
}

// TestLeafRefusesReadableKey: a kept key file that others can read stops
// the start.
func TestLeafRefusesReadableKey(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	dir := t.TempDir()
	if _, err := Enroll(context.Background(), tc.enrollOptions(dir, ModeLeaf)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, leavesDir, DefaultHost+".pem")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLeaves(dir, testLogger())
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("OpenLeaves with a 0644 key = %v, want a refusal", err)
	}
}

// TestLeafIgnoresForeignKeptCertificate: a kept certificate that does not
// chain to the enrolled root (say, after re-enrolling with another
// step-ca) is not served; a fresh one is obtained.
func TestLeafIgnoresForeignKeptCertificate(t *testing.T) {
	a, b := startStepCA(t, caOptions{}), startStepCA(t, caOptions{})
	dir := t.TempDir()
	if _, err := Enroll(context.Background(), a.enrollOptions(dir, ModeLeaf)); err != nil {
		t.Fatal(err)
	}
	if _, err := Enroll(context.Background(), b.enrollOptions(dir, ModeLeaf)); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLeaves(dir, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := tlsServer(t, l.GetCertificate)
	if _, _, err := get(t, addr, DefaultHost, b.roots); err != nil {
		t.Errorf("client trusting the new root: %v", err)
	}
	if _, _, err := get(t, addr, DefaultHost, a.roots); err == nil {
		t.Error("client trusting only the old root still passes")
	}
}

// TestLeafBackgroundRetries: while step-ca is down, the scheduler keeps
// retrying with backoff and counts failures; once the certificate has
// expired, handshakes get an error that says so.
func TestLeafBackgroundRetries(t *testing.T) {
	tc := startStepCA(t, caOptions{})
	dir := t.TempDir()
	cfg := Config{
		CAURL: tc.url, Roots: tc.roots, Dir: dir, Hosts: []string{"api.openai.com"},
		Lifetime: 5 * time.Second, Provisioner: leafProv, Password: []byte(testPassword),
		Timeout: 5 * time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: testLogger(),
	}
	l, err := NewLeaves(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := l.Certificate(context.Background(), "api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	tc.stop()

	if time.Until(cert.Leaf.NotAfter) < time.Second {
		t.Skip("machine too slow: the 5 s certificate is about to expire before the restart")
	}
	// A restart loads the kept certificate and renews it in the background.
	l, err = NewLeaves(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	deadline := time.Now().Add(30 * time.Second)
	for l.Stats().Failures < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := l.Stats(); s.Failures < 3 || s.Renewals != 0 {
		t.Fatalf("Stats = %+v, want repeated failed renewals", s)
	}
	for time.Now().Before(cert.Leaf.NotAfter.Add(100 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
	}
	_, err = l.Certificate(context.Background(), "api.openai.com")
	if err == nil || !strings.Contains(err.Error(), "expired on") || !errors.Is(err, ErrUnavailable) {
		t.Errorf("after expiry with step-ca down: err = %v, want 'expired on' and ErrUnavailable", err)
	}
}
