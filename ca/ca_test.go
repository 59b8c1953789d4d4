package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestCA initialises a CA in a fresh directory and loads it.
func newTestCA(t testing.TB, init InitOptions, load LoadOptions) (string, *Authority) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := Init(dir, init); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if load.Logger == nil {
		load.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := Load(dir, load)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return dir, a
}

// rootPool is a pool holding the PEM certificates in pemData.
func rootPool(t testing.TB, pemData []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("no certificates in PEM data")
	}
	return pool
}

// startServer runs an HTTPS server on loopback whose certificates come from
// getCert; it answers every request with "hello".
func startServer(t testing.TB, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	srv.TLS = &tls.Config{GetCertificate: getCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// get fetches https://host/ from addr with a client trusting only roots.
func get(roots *x509.CertPool, host, addr string) (string, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		Proxy: nil,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + host + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestInitWritesStrictCA(t *testing.T) {
	dir, a := newTestCA(t, InitOptions{}, LoadOptions{})
	fi, err := os.Stat(filepath.Join(dir, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key mode = %04o, want 0600", got)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode = %04o, want 0700", got)
	}
	c := a.Certificate()
	checks := []struct {
		name string
		ok   bool
	}{
		{"CA:true", c.BasicConstraintsValid && c.IsCA},
		{"pathlen 0", c.MaxPathLen == 0 && c.MaxPathLenZero},
		{"keyCertSign+cRLSign", c.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign},
		{"SKI", len(c.SubjectKeyId) > 0},
		{"name constraints critical", c.PermittedDNSDomainsCritical},
		{"permits only api.openai.com", len(c.PermittedDNSDomains) == 1 && c.PermittedDNSDomains[0] == DefaultHost},
		{"excludes all IPs", len(c.ExcludedIPRanges) == 2},
		{"ECDSA", c.PublicKeyAlgorithm == x509.ECDSA},
		{"self-signed", isSelfSigned(c)},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("CA certificate: %s not satisfied", ck.name)
		}
	}
	for _, ext := range c.Extensions {
		switch {
		case ext.Id.Equal([]int{2, 5, 29, 19}), ext.Id.Equal([]int{2, 5, 29, 15}), ext.Id.Equal([]int{2, 5, 29, 30}):
			if !ext.Critical {
				t.Errorf("extension %v is not critical", ext.Id)
			}
		}
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	dir, a := newTestCA(t, InitOptions{}, LoadOptions{})
	err := Init(dir, InitOptions{})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Init: err = %v, want refusal", err)
	}
	if err := Init(dir, InitOptions{Force: true}); err != nil {
		t.Fatalf("Init with Force: %v", err)
	}
	b, err := Load(dir, LoadOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if b.Certificate().Equal(a.Certificate()) {
		t.Error("Force did not replace the CA")
	}
}

func TestInitBadHosts(t *testing.T) {
	for _, h := range []string{"1.2.3.4", "::1", "*.*.openai.com", "api.*.com", "*.com", "*.", "a..b", "-a.com", "a_b.com", "", strings.Repeat("a", 64) + ".com"} {
		err := Init(filepath.Join(t.TempDir(), "ca"), InitOptions{Hosts: []string{h}})
		if err == nil {
			t.Errorf("Init(host %q) succeeded, want error", h)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	good := filepath.Join(t.TempDir(), "ca")
	if err := Init(good, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "ca")
	if err := Init(other, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	read := func(dir, f string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		setup   func(dir string)
		opts    LoadOptions
		wantErr string
	}{
		{"missing dir", func(dir string) { os.RemoveAll(dir) }, LoadOptions{}, "no such file"},
		{"missing key", func(dir string) { os.Remove(filepath.Join(dir, keyFile)) }, LoadOptions{}, "private key"},
		{"key 0644", func(dir string) { os.Chmod(filepath.Join(dir, keyFile), 0o644) }, LoadOptions{}, "must not be accessible by group or others"},
		{"key 0640", func(dir string) { os.Chmod(filepath.Join(dir, keyFile), 0o640) }, LoadOptions{}, "chmod 600"},
		{"corrupt cert", func(dir string) { os.WriteFile(filepath.Join(dir, certFile), []byte("garbage"), 0o644) }, LoadOptions{}, "no PEM data"},
		{"truncated cert", func(dir string) {
			b := read(dir, certFile)
			os.WriteFile(filepath.Join(dir, certFile), b[:len(b)/2], 0o644)
		}, LoadOptions{}, "certificate"},
		{"corrupt key", func(dir string) {
			os.WriteFile(filepath.Join(dir, keyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}, LoadOptions{}, "not a PEM private key"},
		{"mismatched key", func(dir string) { os.WriteFile(filepath.Join(dir, keyFile), read(other, keyFile), 0o600) }, LoadOptions{}, "do not match"},
		{"key as cert", func(dir string) { os.WriteFile(filepath.Join(dir, certFile), read(dir, keyFile), 0o644) }, LoadOptions{}, "want CERTIFICATE"},
		{"host outside constraints", func(string) {}, LoadOptions{Hosts: []string{"example.com"}}, "outside the name constraints"},
		{"negative validity", func(string) {}, LoadOptions{LeafValidity: -time.Hour}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			os.Chmod(filepath.Join(dir, keyFile), 0o600)
			tt.setup(dir)
			tt.opts.Logger = slog.New(slog.DiscardHandler)
			_, err := Load(dir, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load: err = %v, want %q", err, tt.wantErr)
			}
			if bytes.Contains([]byte(err.Error()), []byte("-----")) {
				t.Errorf("error quotes key material: %v", err)
			}
		})
	}
}

func TestGoClientVerifiesLeaf(t *testing.T) {
	_, a := newTestCA(t, InitOptions{}, LoadOptions{})
	addr := startServer(t, a.GetCertificate)
	roots := rootPool(t, a.CertPEM())
	body, err := get(roots, "api.openai.com", addr)
	if err != nil {
		t.Fatalf("GET via leaf: %v", err)
	}
	if body != "hello" {
		t.Errorf("body = %q", body)
	}
	// A name the CA does not intercept: the server refuses to mint, the
	// handshake fails.
	if _, err := get(roots, "example.com", addr); err == nil {
		t.Error("handshake for example.com succeeded")
	}
}

func TestLeafProperties(t *testing.T) {
	_, a := newTestCA(t, InitOptions{}, LoadOptions{LeafValidity: 2 * time.Hour})
	tc, err := a.Leaf("API.OpenAI.com.")
	if err != nil {
		t.Fatal(err)
	}
	l := tc.Leaf
	if l == nil {
		t.Fatal("tls.Certificate.Leaf not set")
	}
	if len(tc.Certificate) != 1 {
		t.Errorf("chain length %d, want 1 (root is not sent)", len(tc.Certificate))
	}
	ca := a.Certificate()
	switch {
	case len(l.DNSNames) != 1 || l.DNSNames[0] != "api.openai.com":
		t.Errorf("SAN dNSName = %v", l.DNSNames)
	case len(l.ExtKeyUsage) != 1 || l.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth:
		t.Errorf("EKU = %v", l.ExtKeyUsage)
	case l.KeyUsage != x509.KeyUsageDigitalSignature:
		t.Errorf("KU = %v", l.KeyUsage)
	case !bytes.Equal(l.AuthorityKeyId, ca.SubjectKeyId):
		t.Errorf("AKI %x != CA SKI %x", l.AuthorityKeyId, ca.SubjectKeyId)
	case l.IsCA:
		t.Error("leaf is a CA")
	case l.SerialNumber.Sign() <= 0 || l.SerialNumber.BitLen() < 64:
		t.Errorf("serial %v is not a large positive random number", l.SerialNumber)
	case !l.NotBefore.Before(time.Now()):
		t.Errorf("NotBefore %v not in the past", l.NotBefore)
	case l.NotAfter.Sub(l.NotBefore) > 2*time.Hour+leafBackdate:
		t.Errorf("validity %v longer than asked", l.NotAfter.Sub(l.NotBefore))
	}
	if err := l.CheckSignatureFrom(ca); err != nil {
		t.Errorf("leaf not signed by CA: %v", err)
	}
	tc2, err := a.Leaf("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if tc2 != tc {
		t.Error("second Leaf call was not served from the cache")
	}
}

func TestLeafRefusesOtherNames(t *testing.T) {
	_, a := newTestCA(t, InitOptions{Hosts: []string{"api.openai.com", "openai.internal"}}, LoadOptions{Hosts: []string{"api.openai.com"}})
	for _, name := range []string{"example.com", "evil.api.openai.com", "openai.internal", "", "127.0.0.1", "api.openai.com\x00.evil"} {
		_, err := a.Leaf(name)
		if !errors.Is(err, ErrNotIntercepted) {
			t.Errorf("Leaf(%q): err = %v, want ErrNotIntercepted", name, err)
		}
	}
	if _, err := a.GetCertificate(&tls.ClientHelloInfo{}); err == nil || !strings.Contains(err.Error(), "SNI") {
		t.Errorf("GetCertificate without SNI: err = %v", err)
	}
}

func TestLoadHostsDefaultToConstraints(t *testing.T) {
	_, a := newTestCA(t, InitOptions{Hosts: []string{"api.openai.com", "files.openai.com"}}, LoadOptions{})
	for _, h := range []string{"api.openai.com", "files.openai.com"} {
		if _, err := a.Leaf(h); err != nil {
			t.Errorf("Leaf(%s): %v", h, err)
		}
	}
}

func TestConcurrentMintOnce(t *testing.T) {
	_, a := newTestCA(t, InitOptions{}, LoadOptions{})
	const n = 64
	var wg sync.WaitGroup
	certs := make([]*tls.Certificate, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			certs[i], errs[i] = a.GetCertificate(&tls.ClientHelloInfo{ServerName: "api.openai.com"})
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if certs[i] != certs[0] {
			t.Fatalf("call %d got a different certificate", i)
		}
	}
	if got := a.Stats().Minted; got != 1 {
		t.Errorf("minted %d leaves for one name, want 1", got)
	}
}

func TestIntermediateIssuerIsSentInChain(t *testing.T) {
	// A root outside sessctl (as an organisation's CA would be) signs a
	// name-constrained intermediate that sessctl mints with.
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rootTpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "org root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTpl, rootTpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	interTpl := &x509.Certificate{
		SerialNumber:                big.NewInt(2),
		Subject:                     pkix.Name{CommonName: "sessctl intermediate"},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(12 * time.Hour),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{"api.openai.com"},
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTpl, root, &interKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(interDER)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := writePair(dir, inter, interKey); err != nil {
		t.Fatal(err)
	}
	a, err := Load(dir, LoadOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Leaf("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.Certificate) != 2 || !bytes.Equal(leaf.Certificate[1], interDER) {
		t.Fatalf("chain has %d certificates, want leaf + intermediate", len(leaf.Certificate))
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	addr := startServer(t, a.GetCertificate)
	if _, err := get(roots, "api.openai.com", addr); err != nil {
		t.Fatalf("client trusting only the org root: %v", err)
	}
}

// TestWildcardHost: "*.openai.azure.com" constrains the CA to the domain
// openai.azure.com, and leaves are minted for any one-label name below it
// (an Azure resource), never for the domain itself or deeper names; a Go
// client verifies such a leaf against the constrained CA.
func TestWildcardHost(t *testing.T) {
	hosts := []string{"api.openai.com", "*.openai.azure.com"}
	_, a := newTestCA(t, InitOptions{Hosts: hosts}, LoadOptions{Hosts: hosts})
	block := a.state.Load().cert
	if got := strings.Join(block.PermittedDNSDomains, ","); got != "api.openai.com,openai.azure.com" {
		t.Errorf("name constraints %s", got)
	}
	for _, name := range []string{"api.openai.com", "res1.openai.azure.com", "RES2.openai.azure.com."} {
		if _, err := a.Leaf(name); err != nil {
			t.Errorf("Leaf(%q): %v", name, err)
		}
	}
	for _, name := range []string{"openai.azure.com", "a.b.openai.azure.com", "*.openai.azure.com", "evil.azure.com", "x.api.openai.com", "bad_.openai.azure.com"} {
		if _, err := a.Leaf(name); !errors.Is(err, ErrNotIntercepted) {
			t.Errorf("Leaf(%q): err = %v, want ErrNotIntercepted", name, err)
		}
	}
	addr := startServer(t, a.GetCertificate)
	if body, err := get(rootPool(t, a.CertPEM()), "res1.openai.azure.com", addr); err != nil || body != "hello" {
		t.Errorf("GET res1.openai.azure.com via a wildcard leaf: %q, %v", body, err)
	}
	for _, bad := range [][]string{{"*.com.*"}, {"*.bad_domain.example"}} {
		if err := Init(t.TempDir(), InitOptions{Hosts: bad}); err == nil {
			t.Errorf("Init(%v) accepted", bad)
		}
	}
}
