package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rogueLeaf signs a leaf for the given names directly with the CA key,
// bypassing the Authority's host check, as someone who stole the key would.
func rogueLeaf(t *testing.T, a *Authority, dnsNames []string, ips []net.IP) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := a.state.Load()
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, iss.cert, &key.PublicKey, iss.signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestNameConstraintsRejectRogueLeaves(t *testing.T) {
	_, a := newTestCA(t, InitOptions{}, LoadOptions{})
	roots := rootPool(t, a.CertPEM())
	tests := []struct {
		name  string
		dns   []string
		ips   []net.IP
		host  string // what the client verifies
		check func(error) bool
	}{
		{"other domain", []string{"evil.com"}, nil, "evil.com", isNameConstraintError},
		{"bare IP", nil, []net.IP{net.ParseIP("203.0.113.7")}, "203.0.113.7", isNameConstraintError},
		{"IPv6", nil, []net.IP{net.ParseIP("2001:db8::1")}, "2001:db8::1", isNameConstraintError},
		{"smuggled beside an allowed name", []string{"api.openai.com", "evil.com"}, nil, "api.openai.com", isNameConstraintError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rogue := rogueLeaf(t, a, tt.dns, tt.ips)
			_, err := rogue.Leaf.Verify(x509.VerifyOptions{DNSName: tt.host, Roots: roots})
			if err == nil || !tt.check(err) {
				t.Fatalf("Verify: err = %v, want a name constraint violation", err)
			}
			// The same through a real handshake.
			addr := startServer(t, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return rogue, nil })
			if _, err := get(roots, tt.host, addr); err == nil {
				t.Fatal("client accepted the rogue leaf")
			}
		})
	}
	// The control: a leaf the same way for the permitted name verifies.
	ok := rogueLeaf(t, a, []string{"api.openai.com"}, nil)
	if _, err := ok.Leaf.Verify(x509.VerifyOptions{DNSName: "api.openai.com", Roots: roots}); err != nil {
		t.Fatalf("permitted leaf: %v", err)
	}
}

func isNameConstraintError(err error) bool {
	var ci x509.CertificateInvalidError
	return errors.As(err, &ci) && ci.Reason == x509.CANotAuthorizedForThisName
}

// clientFixture is a CA, a TLS server minting from it, and PEM files for
// external clients: the CA bundle, a leaf, and a foreign CA (to show that
// each client really verifies).
type clientFixture struct {
	a         *Authority
	addr      string // loopback host:port of the TLS server
	port      string
	caFile    string
	leafFile  string
	otherFile string // a CA that did not issue the server's leaves
	rogueFile string // a leaf for evil.com signed with the CA key
}

func newClientFixture(t *testing.T) *clientFixture {
	t.Helper()
	_, a := newTestCA(t, InitOptions{}, LoadOptions{})
	_, other := newTestCA(t, InitOptions{}, LoadOptions{})
	dir := t.TempDir()
	f := &clientFixture{
		a:         a,
		caFile:    filepath.Join(dir, "ca.crt"),
		leafFile:  filepath.Join(dir, "leaf.pem"),
		otherFile: filepath.Join(dir, "other.crt"),
		rogueFile: filepath.Join(dir, "rogue.pem"),
	}
	leaf, err := a.Leaf("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	rogue := rogueLeaf(t, a, []string{"evil.com"}, nil)
	for path, data := range map[string][]byte{
		f.caFile:    a.CertPEM(),
		f.otherFile: other.CertPEM(),
		f.leafFile:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}),
		f.rogueFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rogue.Certificate[0]}),
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.addr = startServer(t, a.GetCertificate)
	_, f.port, _ = net.SplitHostPort(f.addr)
	return f
}

// need skips the test when a tool is missing.
func need(t *testing.T, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed; skipping its interoperability check", tool)
	}
	return path
}

// run runs a command without proxy settings from the environment.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.Contains(strings.ToLower(k), "proxy") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestOpenSSLVerifyStrict(t *testing.T) {
	openssl := need(t, "openssl")
	f := newClientFixture(t)
	// The CA alone (self-signed, checked as its own anchor).
	if out, err := run(t, openssl, "verify", "-x509_strict", "-CAfile", f.caFile, f.caFile); err != nil {
		t.Fatalf("openssl verify CA: %v\n%s", err, out)
	}
	if out, err := run(t, openssl, "verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", "api.openai.com",
		"-CAfile", f.caFile, f.leafFile); err != nil {
		t.Fatalf("openssl verify leaf: %v\n%s", err, out)
	}
	out, err := run(t, openssl, "verify", "-x509_strict", "-CAfile", f.caFile, f.rogueFile)
	if err == nil {
		t.Fatalf("openssl accepted a leaf for evil.com:\n%s", out)
	}
	if !strings.Contains(out, "name constraint") && !strings.Contains(out, "permitted subtree violation") {
		t.Errorf("openssl rejected the rogue leaf, but not for its name: %s", out)
	}
	if out, err := run(t, openssl, "verify", "-x509_strict", "-CAfile", f.otherFile, f.leafFile); err == nil {
		t.Fatalf("openssl accepted the leaf with a foreign CA:\n%s", out)
	}
}

// pythonClient connects with the ssl module, strict X.509 flags set
// explicitly (they are the default only from Python 3.13 on).
const pythonClient = `
import socket, ssl, sys
cafile, port, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: " + host.encode() + b"\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
print(data.decode().split("\r\n\r\n", 1)[1])
`

func TestPythonStrictVerify(t *testing.T) {
	python := need(t, "python3")
	f := newClientFixture(t)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pythonClient), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, python, script, f.caFile, f.port, "api.openai.com")
	if err != nil || strings.TrimSpace(out) != "hello" {
		t.Fatalf("python strict client: %v\n%s", err, out)
	}
	out, err = run(t, python, script, f.otherFile, f.port, "api.openai.com")
	if err == nil || !strings.Contains(out, "CERTIFICATE_VERIFY_FAILED") {
		t.Fatalf("python with a foreign CA: err = %v\n%s", err, out)
	}
}

func TestCurl(t *testing.T) {
	curl := need(t, "curl")
	f := newClientFixture(t)
	args := func(cafile string) []string {
		return []string{"-sS", "--fail", "--max-time", "10", "--noproxy", "*",
			"--cacert", cafile, "--resolve", "api.openai.com:" + f.port + ":127.0.0.1",
			"https://api.openai.com:" + f.port + "/"}
	}
	out, err := run(t, curl, args(f.caFile)...)
	if err != nil || out != "hello" {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if out, err := run(t, curl, args(f.otherFile)...); err == nil {
		t.Fatalf("curl accepted the leaf with a foreign CA:\n%s", out)
	}
}

// nodeClient connects with tls.connect, trusting only the given CA.
const nodeClient = `
const tls = require('tls'), fs = require('fs');
const [cafile, port, host] = process.argv.slice(2);
const s = tls.connect({host: '127.0.0.1', port: +port, servername: host, ca: fs.readFileSync(cafile)}, () => {
  s.write('GET / HTTP/1.0\r\nHost: ' + host + '\r\n\r\n');
});
let data = '';
s.setEncoding('utf8');
s.on('data', d => { data += d; });
s.on('end', () => { process.stdout.write(data.split('\r\n\r\n')[1]); });
s.on('error', e => { console.error(e.code || '', e.message); process.exit(1); });
`

func TestNode(t *testing.T) {
	node := need(t, "node")
	f := newClientFixture(t)
	script := filepath.Join(t.TempDir(), "client.js")
	if err := os.WriteFile(script, []byte(nodeClient), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, node, script, f.caFile, f.port, "api.openai.com")
	if err != nil || out != "hello" {
		t.Fatalf("node client: %v\n%s", err, out)
	}
	if out, err := run(t, node, script, f.otherFile, f.port, "api.openai.com"); err == nil {
		t.Fatalf("node accepted the leaf with a foreign CA:\n%s", out)
	}
}
