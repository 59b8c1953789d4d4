package stepca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	stepca "github.com/smallstep/certificates/ca"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"
)

func TestMain(m *testing.M) {
	// step-ca logs its start-up with the standard logger.
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// Provisioner names and password of the test step-ca.
const (
	leafProv     = "sessctl"    // JWK provisioner with the default leaf template
	caProv       = "sessctl-ca" // JWK provisioner whose template makes a name-constrained CA
	testPassword = "correct horse battery staple"
)

// intermediateTemplate is the provisioner template docs/ca.md documents
// for intermediate mode: a CA of path length 0 whose critical name
// constraints come from the provisioner's own template data, never from
// the request.
const intermediateTemplate = `{
	"subject": {{ toJson .Subject }},
	"keyUsage": ["certSign", "crlSign"],
	"basicConstraints": {"isCA": true, "maxPathLen": 0},
	"nameConstraints": {
		"critical": true,
		"permittedDNSDomains": {{ toJson .permittedDNSDomains }},
		"excludedIPRanges": ["0.0.0.0/0", "::/0"]
	}
}`

// caOptions shape a test step-ca.
type caOptions struct {
	// interPathLenZero gives step-ca's own intermediate path length 0, as
	// "step ca init" does, which forbids it to sign other CAs.
	interPathLenZero bool
	// permitted are the names the CA provisioner's template permits;
	// default api.openai.com.
	permitted []string
}

// testCA is an in-process step-ca on loopback.
type testCA struct {
	t            *testing.T
	cfg          *config.Config
	srv          *stepca.CA
	done         chan error
	url          string
	rootFile     string
	passwordFile string
	roots        *x509.CertPool
}

// startStepCA runs a step-ca (authority and ca packages, in-memory
// database) with a fresh root and intermediate and two JWK provisioners.
func startStepCA(t *testing.T, o caOptions) *testCA {
	t.Helper()
	dir := t.TempDir()
	rootKey, root := newTestCA(t, "Test Org Root CA", nil, nil, -1, false)
	pathLen := 1
	interKey, inter := newTestCA(t, "Test Org Intermediate CA", root, rootKey, pathLen, o.interPathLenZero)
	tc := &testCA{t: t, rootFile: filepath.Join(dir, "root_ca.crt"), passwordFile: filepath.Join(dir, "password")}
	writePEM(t, tc.rootFile, "CERTIFICATE", root.Raw)
	writePEM(t, filepath.Join(dir, "intermediate_ca.crt"), "CERTIFICATE", inter.Raw)
	b, err := pemutil.Serialize(interKey, pemutil.WithPKCS8(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "intermediate_ca_key"), pem.EncodeToMemory(b), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.passwordFile, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc.roots = x509.NewCertPool()
	tc.roots.AddCert(root)

	permitted := o.permitted
	if len(permitted) == 0 {
		permitted = []string{"api.openai.com"}
	}
	td, _ := json.Marshal(map[string]any{"permittedDNSDomains": permitted})
	dur := func(d time.Duration) *provisioner.Duration { return &provisioner.Duration{Duration: d} }
	claims := &provisioner.Claims{MinTLSDur: dur(time.Second), DefaultTLSDur: dur(time.Hour), MaxTLSDur: dur(24 * time.Hour)}
	tc.cfg = &config.Config{
		Root:             []string{tc.rootFile},
		IntermediateCert: filepath.Join(dir, "intermediate_ca.crt"),
		IntermediateKey:  filepath.Join(dir, "intermediate_ca_key"),
		Address:          "127.0.0.1:" + freePort(t),
		DNSNames:         []string{"127.0.0.1", "localhost"},
		AuthorityConfig: &config.AuthConfig{
			// No backdating, so that short lifetimes in tests are exact.
			Backdate: dur(0),
			Provisioners: provisioner.List{
				newJWKProvisioner(t, leafProv, claims, nil),
				newJWKProvisioner(t, caProv, claims, &provisioner.Options{X509: &provisioner.X509Options{
					Template: intermediateTemplate, TemplateData: td,
				}}),
			},
		},
	}
	tc.url = "https://" + tc.cfg.Address
	tc.start()
	t.Cleanup(tc.stop)
	return tc
}

// start runs the CA and waits until it answers.
func (tc *testCA) start() {
	t := tc.t
	t.Helper()
	// The authority modifies its configuration; give it a copy.
	cfg := *tc.cfg
	auth := *tc.cfg.AuthorityConfig
	cfg.AuthorityConfig = &auth
	srv, err := stepca.New(&cfg, stepca.WithQuiet(true))
	if err != nil {
		t.Fatalf("start step-ca: %v", err)
	}
	tc.srv, tc.done = srv, make(chan error, 1)
	go func() { tc.done <- srv.Run() }()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tc.roots}}, Timeout: time.Second}
	defer hc.CloseIdleConnections()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-tc.done:
			t.Fatalf("step-ca stopped: %v", err)
		default:
		}
		resp, err := hc.Get(tc.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatal("step-ca did not come up")
}

// stop stops the CA; it is a no-op when stopped.
func (tc *testCA) stop() {
	if tc.srv == nil {
		return
	}
	if err := tc.srv.Stop(); err != nil {
		tc.t.Errorf("stop step-ca: %v", err)
	}
	if err := <-tc.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		tc.t.Errorf("step-ca: %v", err)
	}
	tc.srv = nil
}

// token makes a one-time token the way "step ca token" does.
func (tc *testCA) token(subject string, sans ...string) string {
	tc.t.Helper()
	p, err := stepca.NewProvisioner(leafProv, "", tc.url, []byte(testPassword), stepca.WithRootFile(tc.rootFile))
	if err != nil {
		tc.t.Fatal(err)
	}
	tok, err := p.Token(subject, sans...)
	if err != nil {
		tc.t.Fatal(err)
	}
	return tok
}

// enrollOptions are EnrollOptions for this CA with the password file.
func (tc *testCA) enrollOptions(dir string, mode Mode) EnrollOptions {
	prov := leafProv
	if mode == ModeIntermediate {
		prov = caProv
	}
	return EnrollOptions{
		CAURL: tc.url, RootFile: tc.rootFile, Dir: dir, Mode: mode,
		Provisioner: prov, PasswordFile: tc.passwordFile,
		Timeout: 5 * time.Second, Logger: testLogger(),
	}
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newJWKProvisioner makes a JWK provisioner whose key is encrypted with
// testPassword.
func newJWKProvisioner(t *testing.T, name string, claims *provisioner.Claims, opts *provisioner.Options) *provisioner.JWK {
	t.Helper()
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	jwe, err := jose.EncryptJWK(jwk, []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := jwe.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	pub := jwk.Public()
	return &provisioner.JWK{Type: "JWK", Name: name, Key: &pub, EncryptedKey: enc, Claims: claims, Options: opts}
}

// newTestCA makes a CA certificate signed by parent (self-signed when nil).
func newTestCA(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, pathLen int, pathLenZero bool) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Test Org"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLenZero,
	}
	if pathLenZero {
		tpl.MaxPathLen = 0
	}
	if parent == nil {
		parent, parentKey = tpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// tlsServer serves HTTPS on loopback with getCert and returns its
// address.
func tlsServer(t *testing.T, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello from "+r.Host)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
		// Generous: the first handshake for a host waits for step-ca, which
		// is slow under the race detector on a busy machine.
		ReadHeaderTimeout: time.Minute,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// get makes an HTTPS request for host to addr as a client that trusts only
// roots, and returns the body and the certificates the server sent.
func get(t *testing.T, addr, host string, roots *x509.CertPool) (string, []*x509.Certificate, error) {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	resp, err := hc.Get("https://" + host + "/v1/models")
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), resp.TLS.PeerCertificates, err
}
