// Package oidctest runs a local OpenID Connect issuer for tests.
//
// An [Issuer] is an httptest TLS server that serves a discovery document
// and a JSON Web Key Set, and signs ID tokens shaped like those of GitHub
// Actions with keys the test adds, withdraws and can misuse (sign with the
// wrong key, with no signature at all). It needs no network beyond
// loopback.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Paths of the discovery document and of the key set on the issuer.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/.well-known/jwks"
)

// Audience is the aud claim of GitHubClaims.
const Audience = "sessctl"

// Key is a signing key of an Issuer.
type Key struct {
	// ID is the key id, the kid of the JWKS entry and of token headers.
	ID string
	// Alg is the algorithm tokens signed with the key use.
	Alg jose.SignatureAlgorithm
	// Signer is the private key.
	Signer crypto.Signer
}

// Issuer is a local OIDC issuer. Its methods are safe for concurrent use.
type Issuer struct {
	srv      *httptest.Server
	jwksHits atomic.Int32

	mu        sync.Mutex
	keys      map[string]Key
	published map[string]bool
	n         int // keys ever added, for key ids
}

// NewIssuer starts an issuer with no keys (see AddKey) on a loopback TLS
// port. It is closed when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{keys: map[string]Key{}, published: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc(DiscoveryPath, is.serveDiscovery)
	mux.HandleFunc(JWKSPath, is.serveJWKS)
	is.srv = httptest.NewUnstartedServer(mux)
	// Handshake errors from clients that do not trust the server are
	// expected in tests.
	is.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	is.srv.StartTLS()
	t.Cleanup(is.srv.Close)
	return is
}

func (is *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                is.srv.URL,
		"jwks_uri":                              is.srv.URL + JWKSPath,
		"subject_types_supported":               []string{"public", "pairwise"},
		"response_types_supported":              []string{"id_token"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "repository"},
	})
}

func (is *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	is.jwksHits.Add(1)
	var set jose.JSONWebKeySet
	is.mu.Lock()
	for kid, k := range is.keys {
		if is.published[kid] {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Signer.Public(), KeyID: kid, Algorithm: string(k.Alg), Use: "sig"})
		}
	}
	is.mu.Unlock()
	slices.SortFunc(set.Keys, func(a, b jose.JSONWebKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(set)
}

// URL returns the issuer URL, the iss claim of its tokens
// (https://127.0.0.1:port).
func (is *Issuer) URL() string { return is.srv.URL }

// Close stops the server: discovery and key fetches fail from then on.
// NewIssuer arranges for it to be called when the test ends.
func (is *Issuer) Close() { is.srv.Close() }

// HTTPClient returns a client that trusts the issuer's certificate.
func (is *Issuer) HTTPClient() *http.Client { return is.srv.Client() }

// CAFile writes the issuer's certificate as PEM into a temporary
// directory of t and returns its path, for a configuration's CA file.
func (is *Issuer) CAFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "issuer-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatalf("oidctest: write CA file: %v", err)
	}
	return p
}

// JWKSHits returns how many times the key set has been fetched.
func (is *Issuer) JWKSHits() int32 { return is.jwksHits.Load() }

// AddKey generates a key for alg (RS256/384/512, PS256/384/512,
// ES256/384/512 or EdDSA), publishes it in the key set and returns its
// key id.
func (is *Issuer) AddKey(t testing.TB, alg jose.SignatureAlgorithm) (kid string) {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("oidctest: unsupported algorithm %s", alg)
	}
	if err != nil {
		t.Fatalf("oidctest: generate %s key: %v", alg, err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.n++
	kid = fmt.Sprintf("key-%d", is.n)
	is.keys[kid] = Key{ID: kid, Alg: alg, Signer: priv}
	is.published[kid] = true
	return kid
}

// Unpublish withdraws kid from the key set, as an issuer does when it
// rotates keys. Sign can still use the key: tokens signed with it stop
// verifying once a verifier refreshes its keys.
func (is *Issuer) Unpublish(kid string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	delete(is.published, kid)
}

// Key returns the key kid, published or not, and whether there is one.
func (is *Issuer) Key(kid string) (Key, bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	k, ok := is.keys[kid]
	return k, ok
}

// GitHubClaims returns the claims of a GitHub Actions ID token for this
// issuer, issued 5 seconds before now and valid for 5 minutes, with
// audience Audience, subject "repo:acme/docs:environment:production" and
// repository acme/docs. Callers change them freely: each call returns a
// new map.
func (is *Issuer) GitHubClaims(now time.Time) map[string]any {
	return map[string]any{
		"jti":                   "a1b2c3",
		"sub":                   "repo:acme/docs:environment:production",
		"aud":                   Audience,
		"ref":                   "refs/heads/main",
		"sha":                   "d6cd1e2bd19e03a81132a23b2025920577f84e37",
		"repository":            "acme/docs",
		"repository_owner":      "acme",
		"repository_owner_id":   "65",
		"repository_id":         "74",
		"repository_visibility": "private",
		"run_id":                "6729",
		"run_number":            "12",
		"run_attempt":           "1",
		"actor":                 "octocat",
		"actor_id":              "583231",
		"workflow":              "docs bot",
		"workflow_ref":          "acme/docs/.github/workflows/bot.yml@refs/heads/main",
		"job_workflow_ref":      "acme/docs/.github/workflows/bot.yml@refs/heads/main",
		"event_name":            "push",
		"ref_type":              "branch",
		"environment":           "production",
		"runner_environment":    "github-hosted",
		"head_ref":              "",
		"base_ref":              "",
		"iss":                   is.srv.URL,
		"nbf":                   now.Add(-5 * time.Second).Unix(),
		"iat":                   now.Add(-5 * time.Second).Unix(),
		"exp":                   now.Add(5 * time.Minute).Unix(),
	}
}

// Sign returns claims as a compact JWS signed with the key kid, in its
// own algorithm, with kid in the header.
func (is *Issuer) Sign(t testing.TB, kid string, claims map[string]any) string {
	t.Helper()
	k, ok := is.Key(kid)
	if !ok {
		t.Fatalf("oidctest: no key %q", kid)
	}
	return SignWith(t, k.Alg, k.Signer, kid, claims)
}

// SignWith returns claims as a compact JWS signed with any key go-jose
// accepts for alg (a private key, or bytes for HMAC), with kid in the
// header unless it is empty: for forged tokens.
func SignWith(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("oidctest: signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("oidctest: claims: %v", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatalf("oidctest: sign: %v", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("oidctest: serialize: %v", err)
	}
	return out
}

// Unsigned returns claims as an "alg: none" token with an empty signature.
// Claims that cannot be encoded as JSON give a token with an empty
// payload object.
func Unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, err := json.Marshal(claims)
	if err != nil {
		p = []byte("{}")
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}
