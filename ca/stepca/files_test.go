package stepca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/ca"
)

func TestReadEnrollmentFixture(t *testing.T) {
	e, err := ReadEnrollment("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if e.Mode != ModeLeaf || e.CAURL != "https://ca.internal:9000" || e.Provisioner != "sessctl" ||
		e.PasswordFile != "/etc/sessctl/provisioner-password" || len(e.Hosts) != 1 || e.Lifetime != 24*time.Hour {
		t.Errorf("ReadEnrollment = %+v", e)
	}
	dir := t.TempDir()
	if err := writeEnrollment(dir, e); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, enrollmentFile))
	want, _ := os.ReadFile(filepath.Join("testdata", enrollmentFile))
	if !bytes.Equal(got, want) {
		t.Errorf("written enrollment differs from the fixture:\n%s\nwant:\n%s", got, want)
	}
	if _, err := ReadEnrollment(t.TempDir()); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("ReadEnrollment(empty dir) = %v, want not-exist", err)
	}
}

// unwrapAll returns the innermost error.
func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestParseEnrollment(t *testing.T) {
	tests := []struct {
		name, in, want string // want: "" for success, else part of the error
	}{
		{"ok", `{"mode":"intermediate","ca_url":"https://x","hosts":["A.example."]}`, ""},
		{"unknown mode", `{"mode":"root","ca_url":"https://x","hosts":["a.example"]}`, "unknown mode"},
		{"no url", `{"mode":"leaf","hosts":["a.example"]}`, "no ca_url"},
		{"no hosts", `{"mode":"leaf","ca_url":"https://x"}`, "no hosts"},
		{"bad host", `{"mode":"leaf","ca_url":"https://x","hosts":["../../etc"]}`, "not a valid DNS name"},
		{"bad lifetime", `{"mode":"leaf","ca_url":"https://x","hosts":["a.example"],"lifetime":"soon"}`, "lifetime"},
		{"negative lifetime", `{"mode":"leaf","ca_url":"https://x","hosts":["a.example"],"lifetime":"-1h"}`, "lifetime"},
		{"unknown field", `{"mode":"leaf","ca_url":"https://x","hosts":["a.example"],"password":"x"}`, "unknown field"},
		{"trailing data", `{"mode":"leaf","ca_url":"https://x","hosts":["a.example"]} {}`, "after the JSON"},
		{"not json", `mode: leaf`, "not valid JSON"},
	}
	for _, tt := range tests {
		e, err := parseEnrollment([]byte(tt.in))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want == "" && e.Hosts[0] != "a.example":
			t.Errorf("%s: hosts = %v, want normalized", tt.name, e.Hosts)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestNormalizeHosts(t *testing.T) {
	got, err := ca.NormalizeHosts([]string{"API.OpenAI.com.", " api.openai.com", "a-b.example"})
	if err != nil || len(got) != 2 || got[0] != "api.openai.com" || got[1] != "a-b.example" {
		t.Errorf("normalizeHosts = %v, %v", got, err)
	}
	for _, bad := range []string{"", "*.example.com", "::1", "a..b", "-a.example", "a_b.example", "a/b", strings.Repeat("a", 64) + ".example"} {
		if _, err := ca.NormalizeHosts([]string{bad}); err == nil {
			t.Errorf("ca.NormalizeHosts(%q) accepted", bad)
		}
	}
}

// selfSigned returns a throwaway certificate and key for bundle tests.
func selfSigned(t testing.TB) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: bigOne(), DNSNames: []string{"a.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der, der}, PrivateKey: key, Leaf: leaf}
}

func TestBundleRoundTrip(t *testing.T) {
	c := selfSigned(t)
	data, err := encodeBundle(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Certificate) != 2 || !bytes.Equal(got.Certificate[0], c.Certificate[0]) || got.Leaf == nil {
		t.Errorf("round trip lost the chain")
	}

	other := selfSigned(t)
	otherKey, _ := encodeKey(other.PrivateKey)
	certs := encodeCerts(c.Certificate)
	keyPEM, _ := encodeKey(c.PrivateKey)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"no key", certs, "no private key"},
		{"no certificate", keyPEM, "no certificate"},
		{"wrong key", append(otherKey, certs...), "not the certificate's"},
		{"two keys", append(append(keyPEM, keyPEM...), certs...), "more than one private key"},
		{"garbage", append(data, "junk"...), "not PEM"},
		{"other block", append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}})...), "unexpected PEM block"},
		{"bad key", append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-bytes")}), certs...), "cannot be parsed"},
		{"bad certificate", append(keyPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}})...), "leaf certificate"},
	}
	for _, tt := range tests {
		_, err := parseBundle(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret-bytes") {
			t.Errorf("%s: error quotes the key", tt.name)
		}
	}
}

func TestParseToken(t *testing.T) {
	for _, bad := range []string{"", "x", "a.b.c", "eyJhbGciOiJub25lIn0.e30."} {
		if _, err := parseToken(bad); err == nil {
			t.Errorf("parseToken(%q) accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("parseToken error quotes the token: %v", err)
		}
	}
}

func FuzzParseBundle(f *testing.F) {
	c := selfSigned(f)
	data, _ := encodeBundle(c)
	f.Add(data)
	f.Add(encodeCerts(c.Certificate))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := parseBundle(in)
		if err != nil {
			return
		}
		// Whatever parses is usable and survives a round trip.
		if got.Leaf == nil || got.PrivateKey == nil || len(got.Certificate) == 0 {
			t.Fatal("parsed bundle is incomplete")
		}
		again, err := encodeBundle(got)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := parseBundle(again); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func FuzzParseEnrollment(f *testing.F) {
	fixture, _ := os.ReadFile(filepath.Join("testdata", enrollmentFile))
	f.Add(fixture)
	f.Add([]byte(`{"mode":"intermediate","ca_url":"https://x","hosts":["a.example"]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := parseEnrollment(in)
		if err != nil {
			return
		}
		for _, h := range e.Hosts {
			if ca.ValidHost(h) != nil || strings.ContainsAny(h, `/\`) {
				t.Fatalf("accepted host %q", h)
			}
		}
		if e.Lifetime < 0 {
			t.Fatal("negative lifetime accepted")
		}
	})
}

func FuzzParseToken(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.AAAA")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := parseToken(tok)
		if err != nil {
			if len(tok) > 8 && strings.Contains(err.Error(), tok) {
				t.Fatal("error quotes the token")
			}
			return
		}
		if c.Subject != "" && len(c.SANs) == 0 {
			t.Fatal("subject without SANs")
		}
	})
}

func bigOne() *big.Int { return big.NewInt(1) }
