package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testIssuer is a local OIDC issuer: an httptest TLS server serving a
// discovery document and a JWKS, and minting GitHub-Actions-shaped tokens.
type testIssuer struct {
	srv      *httptest.Server
	jwksHits atomic.Int32

	mu   sync.Mutex
	keys map[string]testKey // kid -> key; all published
}

type testKey struct {
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	ti := &testIssuer{keys: map[string]testKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                ti.srv.URL,
			"jwks_uri":                              ti.srv.URL + "/.well-known/jwks",
			"subject_types_supported":               []string{"public", "pairwise"},
			"response_types_supported":              []string{"id_token"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "repository"},
		})
	})
	mux.HandleFunc("/.well-known/jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.jwksHits.Add(1)
		ti.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range ti.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: kid, Algorithm: string(k.alg), Use: "sig"})
		}
		ti.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})
	ti.srv = httptest.NewUnstartedServer(mux)
	ti.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake errors are expected
	ti.srv.StartTLS()
	t.Cleanup(ti.srv.Close)
	return ti
}

// addKey creates and publishes a signing key and returns its kid.
func (ti *testIssuer) addKey(t *testing.T, alg jose.SignatureAlgorithm) string {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		t.Fatalf("unsupported alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	kid := fmt.Sprintf("key-%d", len(ti.keys)+1)
	ti.keys[kid] = testKey{alg: alg, priv: priv}
	return kid
}

// unpublish removes a key from the JWKS; tokens signed with it stop
// verifying once the cache is refreshed.
func (ti *testIssuer) unpublish(kid string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	delete(ti.keys, kid)
}

func (ti *testIssuer) key(kid string) testKey {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.keys[kid]
}

// caFile writes the server's certificate as PEM and returns its path.
func (ti *testIssuer) caFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "issuer-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ti.srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// githubClaims returns the claims of a GitHub Actions ID token at now.
func (ti *testIssuer) githubClaims(now time.Time) map[string]any {
	return map[string]any{
		"jti":                   "a1b2c3",
		"sub":                   "repo:acme/docs:environment:production",
		"aud":                   "sessctl",
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
		"iss":                   ti.srv.URL,
		"nbf":                   now.Add(-5 * time.Second).Unix(),
		"iat":                   now.Add(-5 * time.Second).Unix(),
		"exp":                   now.Add(5 * time.Minute).Unix(),
	}
}

// sign signs claims with the key kid (its own algorithm).
func (ti *testIssuer) sign(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	k := ti.key(kid)
	if k.priv == nil {
		t.Fatalf("no key %s", kid)
	}
	return signWith(t, k.alg, k.priv, kid, claims)
}

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unsignedToken builds an "alg: none" token.
func unsignedToken(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// with returns a copy of m with the given changes; a nil value deletes.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func newOIDCAuthenticator(t *testing.T, clock *fakeClock, issuers ...OIDCIssuer) *Authenticator {
	t.Helper()
	key, err := NewSessionKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), Config{OIDC: issuers, SessionKey: key, Now: clock.Now, SessionTokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthenticateOIDC(t *testing.T) {
	ti := newTestIssuer(t)
	rsKid := ti.addKey(t, jose.RS256)
	esKid := ti.addKey(t, jose.ES256)
	other := newTestIssuer(t) // a second, trusted issuer with its own keys
	otherKid := other.addKey(t, jose.RS256)

	clock := &fakeClock{t: time.Now()}
	now := clock.Now()
	a := newOIDCAuthenticator(t, clock,
		OIDCIssuer{Issuer: ti.srv.URL, Audience: "sessctl", Claims: map[string]string{"repository_owner": "acme", "repository": "acme/*"}, CAFile: ti.caFile(t)},
		OIDCIssuer{Issuer: other.srv.URL, Audience: "sessctl", CAFile: other.caFile(t)},
	)
	good := ti.githubClaims(now)

	rsaPub := ti.key(rsKid).priv.Public()
	pubDER, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	foreignKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	goodRS := ti.sign(t, rsKid, good)
	parts := strings.Split(goodRS, ".")
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	flipped := parts[0] + "." + parts[1] + "." + string(sig)

	tests := []struct {
		name  string
		token string
		err   error
	}{
		{"RS256", goodRS, nil},
		{"ES256", ti.sign(t, esKid, good), nil},
		{"audience list", ti.sign(t, rsKid, with(good, "aud", []string{"other", "sessctl"})), nil},
		{"nbf within leeway", ti.sign(t, rsKid, with(good, "nbf", now.Add(time.Minute).Unix())), nil},
		{"second issuer", other.sign(t, otherKid, with(other.githubClaims(now), "repository_owner", "elsewhere")), nil},
		{"expired", ti.sign(t, rsKid, with(good, "exp", now.Add(-time.Minute).Unix())), ErrExpired},
		{"no exp", ti.sign(t, rsKid, with(good, "exp", nil)), ErrExpired},
		{"not yet valid", ti.sign(t, rsKid, with(good, "nbf", now.Add(10*time.Minute).Unix(), "exp", now.Add(20*time.Minute).Unix())), ErrNotYetValid},
		{"wrong audience", ti.sign(t, rsKid, with(good, "aud", "https://github.com/acme")), ErrWrongAudience},
		{"wrong audience list", ti.sign(t, rsKid, with(good, "aud", []string{"a", "b"})), ErrWrongAudience},
		{"unknown issuer", ti.sign(t, rsKid, with(good, "iss", "https://token.example.com")), ErrUnknownIssuer},
		{"no issuer", ti.sign(t, rsKid, with(good, "iss", nil)), ErrUnknownIssuer},
		{"other issuer's key", other.sign(t, otherKid, good), ErrBadSignature},
		{"alg none", unsignedToken(good), ErrUnsigned},
		{"alg none with signature", strings.TrimSuffix(unsignedToken(good), ".") + ".c2ln", ErrUnsigned},
		{"flipped signature", flipped, ErrBadSignature},
		{"foreign key, known kid", signWith(t, jose.RS256, foreignKey, rsKid, good), ErrBadSignature},
		{"foreign key, no kid", signWith(t, jose.RS256, foreignKey, "", good), ErrBadSignature},
		{"HS256 with the public key", signWith(t, jose.HS256, pubDER, rsKid, good), ErrBadSignature},
		{"claim glob mismatch", ti.sign(t, rsKid, with(good, "repository_owner", "evil")), ErrClaimsNotAccepted},
		{"claim glob crosses slash", ti.sign(t, rsKid, with(good, "repository", "acme/docs/x")), ErrClaimsNotAccepted},
		{"required claim missing", ti.sign(t, rsKid, with(good, "repository", nil)), ErrClaimsNotAccepted},
		{"required claim not a string", ti.sign(t, rsKid, with(good, "repository_owner", map[string]any{"x": "acme"})), ErrClaimsNotAccepted},
		{"malformed parts", "a.b.c", ErrMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("{")) + ".e30.c2ln", ErrMalformed},
		{"payload not an object", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".c2ln", ErrMalformed},
		{"bad signature encoding", parts[0] + "." + parts[1] + ".!!", ErrMalformed},
		{"four parts", goodRS + ".x", ErrUnknownToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.Authenticate(context.Background(), tt.token)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				var ae *AuthError
				if !errors.As(err, &ae) || ae.Reason != reason(tt.err) {
					t.Fatalf("err = %#v, want reason %q", err, reason(tt.err))
				}
				if id != nil {
					t.Fatalf("identity %+v with error", id)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Method != MethodOIDC || id.Subject != "repo:acme/docs:environment:production" || id.TokenHash != HashToken(tt.token) {
				t.Fatalf("identity = %+v", id)
			}
			if id.Expiry.Unix() != good["exp"].(int64) {
				t.Fatalf("expiry %v", id.Expiry)
			}
		})
	}

	id, err := a.Authenticate(context.Background(), goodRS)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"repository": "acme/docs", "repository_owner": "acme", "repository_owner_id": "65", "repository_id": "74",
		"workflow": "docs bot", "workflow_ref": "acme/docs/.github/workflows/bot.yml@refs/heads/main",
		"job_workflow_ref": "acme/docs/.github/workflows/bot.yml@refs/heads/main", "run_id": "6729", "run_attempt": "1",
		"sha": "d6cd1e2bd19e03a81132a23b2025920577f84e37", "ref": "refs/heads/main", "ref_type": "branch",
		"actor": "octocat", "event_name": "push", "environment": "production", "runner_environment": "github-hosted",
	}
	if fmt.Sprint(id.Claims) != fmt.Sprint(want) {
		t.Fatalf("claims = %v\nwant     %v", id.Claims, want)
	}
	if id.Issuer != ti.srv.URL || id.Name() != "octocat" || !strings.HasPrefix(id.String(), "oidc repo:acme/docs") {
		t.Fatalf("identity = %+v (%s, %s)", id, id.Name(), id)
	}
}

func TestOIDCClaimTypes(t *testing.T) {
	ti := newTestIssuer(t)
	kid := ti.addKey(t, jose.ES256)
	clock := &fakeClock{t: time.Now()}
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.srv.URL, Audience: "sessctl", CAFile: ti.caFile(t)})
	// GitLab-shaped, with a number and a boolean.
	claims := map[string]any{
		"iss": ti.srv.URL, "aud": "sessctl", "sub": "project_path:grp/proj:ref_type:branch:ref:main",
		"exp": clock.Now().Add(time.Minute).Unix(), "iat": clock.Now().Unix(),
		"project_path": "grp/proj", "namespace_path": "grp", "pipeline_id": 9007199254740993, "job_id": "42",
		"ref_protected": true, "user_login": "alice", "nested": map[string]any{"a": 1}, "sha": nil,
	}
	id, err := a.Authenticate(context.Background(), ti.sign(t, kid, claims))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"project_path": "grp/proj", "namespace_path": "grp", "pipeline_id": "9007199254740993", "job_id": "42", "ref_protected": "true", "user_login": "alice"}
	if fmt.Sprint(id.Claims) != fmt.Sprint(want) {
		t.Fatalf("claims = %v, want %v", id.Claims, want)
	}
	if id.Name() != "alice" {
		t.Fatalf("Name() = %q", id.Name())
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	ti := newTestIssuer(t)
	old := ti.addKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.srv.URL, Audience: "sessctl", CAFile: ti.caFile(t)})
	claims := ti.githubClaims(clock.Now())
	ctx := context.Background()

	if _, err := a.Authenticate(ctx, ti.sign(t, old, claims)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, ti.sign(t, old, claims)); err != nil {
		t.Fatal(err)
	}
	if n := ti.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for one key, want 1 (cached)", n)
	}

	// Forged tokens (known kid, wrong key; unknown kid) cause no fetch
	// beyond one per minKeyRefresh: a runner cannot make sessctl hammer
	// the issuer.
	foreign, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{old, "no-such-key", ""} {
		for range 3 {
			if _, err := a.Authenticate(ctx, signWith(t, jose.RS256, foreign, kid, claims)); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("forged token, kid %q: err = %v", kid, err)
			}
		}
	}
	if n := ti.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times after forged tokens, want 1", n)
	}

	// The issuer rotates: a new key appears, the old one is withdrawn.
	rotated := ti.addKey(t, jose.ES256)
	oldKey := ti.key(old)
	ti.unpublish(old)
	clock.Advance(minKeyRefresh + time.Second)
	id, err := a.Authenticate(ctx, ti.sign(t, rotated, ti.githubClaims(clock.Now())))
	if err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if id.Claims["repository"] != "acme/docs" {
		t.Fatalf("claims = %v", id.Claims)
	}
	if n := ti.jwksHits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (refreshed on unknown kid)", n)
	}
	// The withdrawn key no longer verifies.
	if _, err := a.Authenticate(ctx, signWith(t, oldKey.alg, oldKey.priv, old, ti.githubClaims(clock.Now()))); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("token signed with a withdrawn key: err = %v", err)
	}
}

func TestParseJWKS(t *testing.T) {
	ti := newTestIssuer(t)
	kid := ti.addKey(t, jose.ES256)
	k := ti.key(kid)
	pub, _ := json.Marshal(jose.JSONWebKey{Key: k.priv.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"})
	priv, _ := json.Marshal(jose.JSONWebKey{Key: k.priv, KeyID: "private", Algorithm: "ES256"})
	body := `{"keys":[` + string(pub) + `,` + string(priv) + `,
		{"kty":"EC","crv":"secp256k1","alg":"ES256K","kid":"k1","x":"AA","y":"AA"},
		{"kty":"OKP","crv":"Ed448","kid":"ed448","x":"AA"},
		{"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
		{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
		"garbage"]}`
	keys, err := parseJWKS([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, key := range keys {
		if !key.IsPublic() {
			t.Fatalf("key %s is not public", key.KeyID)
		}
		kids = append(kids, key.KeyID)
	}
	if strings.Join(kids, ",") != kid+",private" {
		t.Fatalf("kept keys %v", kids)
	}
	if _, err := parseJWKS([]byte("{")); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

func TestOIDCIssuerUnavailable(t *testing.T) {
	ti := newTestIssuer(t)
	kid := ti.addKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	caFile := ti.caFile(t)
	token := ti.sign(t, kid, ti.githubClaims(clock.Now()))
	url := ti.srv.URL
	ti.srv.Close()
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: url, Audience: "sessctl", CAFile: caFile})
	for range 2 { // the second is answered from the remembered failure
		_, err := a.Authenticate(context.Background(), token)
		if !errors.Is(err, ErrIssuerUnavailable) {
			t.Fatalf("err = %v, want %v", err, ErrIssuerUnavailable)
		}
	}
}

func TestOIDCJWKSUnavailable(t *testing.T) {
	ti := newTestIssuer(t)
	kid := ti.addKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.srv.URL, Audience: "sessctl", CAFile: ti.caFile(t)})
	is := a.issuers[ti.srv.URL]
	if _, err := is.getVerifier(context.Background()); err != nil {
		t.Fatal(err)
	}
	token := ti.sign(t, kid, ti.githubClaims(clock.Now()))
	ti.srv.Close() // discovered, but the keys cannot be fetched
	_, err := a.Authenticate(context.Background(), token)
	if !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("err = %v, want %v", err, ErrIssuerUnavailable)
	}
}

func TestOIDCUntrustedIssuerCertificate(t *testing.T) {
	ti := newTestIssuer(t)
	kid := ti.addKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	// No CAFile: the test server's certificate is not trusted.
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.srv.URL, Audience: "sessctl"})
	_, err := a.Authenticate(context.Background(), ti.sign(t, kid, ti.githubClaims(clock.Now())))
	if !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("err = %v, want %v", err, ErrIssuerUnavailable)
	}
}

func TestOIDCWithHTTPClient(t *testing.T) {
	ti := newTestIssuer(t)
	kid := ti.addKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	a, err := New(context.Background(), Config{
		OIDC:       []OIDCIssuer{{Issuer: ti.srv.URL, Audience: "sessctl"}},
		HTTPClient: ti.srv.Client(),
		Now:        clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), ti.sign(t, kid, ti.githubClaims(clock.Now()))); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadIssuers(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	tests := []struct {
		name string
		cfg  OIDCIssuer
		want string
	}{
		{"no issuer", OIDCIssuer{Audience: "a"}, "missing issuer"},
		{"http", OIDCIssuer{Issuer: "http://token.example.com", Audience: "a"}, "not an https URL"},
		{"no audience", OIDCIssuer{Issuer: "https://token.example.com"}, "missing audience"},
		{"unknown claim", OIDCIssuer{Issuer: "https://token.example.com", Audience: "a", Claims: map[string]string{"repo": "x"}}, `claim "repo" is not a pipeline claim`},
		{"bad glob", OIDCIssuer{Issuer: "https://token.example.com", Audience: "a", Claims: map[string]string{"repository": "["}}, "bad glob"},
		{"missing CA", OIDCIssuer{Issuer: "https://token.example.com", Audience: "a", CAFile: filepath.Join(dir, "nope.pem")}, "read CA file"},
		{"not PEM", OIDCIssuer{Issuer: "https://token.example.com", Audience: "a", CAFile: notPEM}, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{OIDC: []OIDCIssuer{tt.cfg}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	_, err := New(context.Background(), Config{OIDC: []OIDCIssuer{{Issuer: "https://a.example", Audience: "x"}, {Issuer: "https://a.example", Audience: "y"}}})
	if err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("duplicate issuer: err = %v", err)
	}
}

func FuzzPeekJWT(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln")
	f.Add(unsignedToken(map[string]any{"iss": "x"}))
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		h, claims, err := peekJWT(raw)
		if err != nil {
			if err != ErrMalformed && err != ErrUnsigned {
				t.Fatalf("err = %v", err)
			}
			return
		}
		if h.Alg == "" || strings.EqualFold(h.Alg, "none") || claims == nil {
			t.Fatalf("accepted header %+v claims %v", h, claims)
		}
		_ = claimString(claims["iss"])
		_ = pipelineClaims(claims)
	})
}

func FuzzAuthenticate(f *testing.F) {
	a, err := New(context.Background(), Config{
		Runners: []Runner{{Name: "r", Token: "sct_fuzz-runner-token"}},
		OIDC:    []OIDCIssuer{{Issuer: "https://127.0.0.1:1", Audience: "sessctl"}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("sct_fuzz-runner-token")
	f.Add("scs_e30.AAAA")
	f.Add(unsignedToken(map[string]any{"iss": "https://127.0.0.1:1"}))
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V4YW1wbGUifQ.c2ln")
	f.Fuzz(func(t *testing.T, cred string) {
		id, err := a.Authenticate(context.Background(), cred)
		if err == nil {
			if id.Method != MethodRunnerToken || id.Runner != "r" {
				t.Fatalf("accepted %q as %+v", cred, id)
			}
			return
		}
		var ae *AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("err %v is not an *AuthError", err)
		}
		if len(cred) > 8 && strings.Contains(err.Error(), cred) {
			t.Fatalf("error %q contains the credential", err)
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"a","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AA"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := parseJWKS(body)
		if err != nil {
			return
		}
		for _, k := range keys {
			if !k.IsPublic() || !k.Valid() {
				t.Fatalf("kept key %+v", k)
			}
		}
	})
}
