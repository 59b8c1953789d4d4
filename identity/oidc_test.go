package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sessctl/sessctl/identity/oidctest"
)

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
	ti := oidctest.NewIssuer(t)
	rsKid := ti.AddKey(t, jose.RS256)
	esKid := ti.AddKey(t, jose.ES256)
	other := oidctest.NewIssuer(t) // a second, trusted issuer with its own keys
	otherKid := other.AddKey(t, jose.RS256)

	clock := &fakeClock{t: time.Now()}
	now := clock.Now()
	a := newOIDCAuthenticator(t, clock,
		OIDCIssuer{Issuer: ti.URL(), Audience: "sessctl", Claims: map[string]string{"repository_owner": "acme", "repository": "acme/*"}, CAFile: ti.CAFile(t)},
		OIDCIssuer{Issuer: other.URL(), Audience: "sessctl", CAFile: other.CAFile(t)},
	)
	good := ti.GitHubClaims(now)

	rsKey, _ := ti.Key(rsKid)
	pubDER, err := x509.MarshalPKIXPublicKey(rsKey.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	foreignKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	goodRS := ti.Sign(t, rsKid, good)
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
		{"ES256", ti.Sign(t, esKid, good), nil},
		{"audience list", ti.Sign(t, rsKid, with(good, "aud", []string{"other", "sessctl"})), nil},
		{"nbf within leeway", ti.Sign(t, rsKid, with(good, "nbf", now.Add(time.Minute).Unix())), nil},
		{"second issuer", other.Sign(t, otherKid, with(other.GitHubClaims(now), "repository_owner", "elsewhere")), nil},
		{"expired", ti.Sign(t, rsKid, with(good, "exp", now.Add(-time.Minute).Unix())), ErrExpired},
		{"no exp", ti.Sign(t, rsKid, with(good, "exp", nil)), ErrExpired},
		{"not yet valid", ti.Sign(t, rsKid, with(good, "nbf", now.Add(10*time.Minute).Unix(), "exp", now.Add(20*time.Minute).Unix())), ErrNotYetValid},
		{"wrong audience", ti.Sign(t, rsKid, with(good, "aud", "https://github.com/acme")), ErrWrongAudience},
		{"wrong audience list", ti.Sign(t, rsKid, with(good, "aud", []string{"a", "b"})), ErrWrongAudience},
		{"unknown issuer", ti.Sign(t, rsKid, with(good, "iss", "https://token.example.com")), ErrUnknownIssuer},
		{"no issuer", ti.Sign(t, rsKid, with(good, "iss", nil)), ErrUnknownIssuer},
		{"other issuer's key", other.Sign(t, otherKid, good), ErrBadSignature},
		{"alg none", oidctest.Unsigned(good), ErrUnsigned},
		{"alg none with signature", strings.TrimSuffix(oidctest.Unsigned(good), ".") + ".c2ln", ErrUnsigned},
		{"flipped signature", flipped, ErrBadSignature},
		{"foreign key, known kid", oidctest.SignWith(t, jose.RS256, foreignKey, rsKid, good), ErrBadSignature},
		{"foreign key, no kid", oidctest.SignWith(t, jose.RS256, foreignKey, "", good), ErrBadSignature},
		{"HS256 with the public key", oidctest.SignWith(t, jose.HS256, pubDER, rsKid, good), ErrBadSignature},
		{"claim glob mismatch", ti.Sign(t, rsKid, with(good, "repository_owner", "evil")), ErrClaimsNotAccepted},
		{"claim glob crosses slash", ti.Sign(t, rsKid, with(good, "repository", "acme/docs/x")), ErrClaimsNotAccepted},
		{"required claim missing", ti.Sign(t, rsKid, with(good, "repository", nil)), ErrClaimsNotAccepted},
		{"required claim not a string", ti.Sign(t, rsKid, with(good, "repository_owner", map[string]any{"x": "acme"})), ErrClaimsNotAccepted},
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
	if id.Issuer != ti.URL() || id.Caller() != "octocat" || !strings.HasPrefix(id.String(), "oidc repo:acme/docs") {
		t.Fatalf("identity = %+v (%s, %s)", id, id.Caller(), id)
	}
}

func TestOIDCClaimTypes(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.ES256)
	clock := &fakeClock{t: time.Now()}
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.URL(), Audience: "sessctl", CAFile: ti.CAFile(t)})
	// GitLab-shaped, with a number and a boolean.
	claims := map[string]any{
		"iss": ti.URL(), "aud": "sessctl", "sub": "project_path:grp/proj:ref_type:branch:ref:main",
		"exp": clock.Now().Add(time.Minute).Unix(), "iat": clock.Now().Unix(),
		"project_path": "grp/proj", "namespace_path": "grp", "pipeline_id": 9007199254740993, "job_id": "42",
		"ref_protected": true, "user_login": "alice", "nested": map[string]any{"a": 1}, "sha": nil,
	}
	id, err := a.Authenticate(context.Background(), ti.Sign(t, kid, claims))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"project_path": "grp/proj", "namespace_path": "grp", "pipeline_id": "9007199254740993", "job_id": "42", "ref_protected": "true", "user_login": "alice"}
	if fmt.Sprint(id.Claims) != fmt.Sprint(want) {
		t.Fatalf("claims = %v, want %v", id.Claims, want)
	}
	if id.Caller() != "alice" {
		t.Fatalf("Name() = %q", id.Caller())
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	old := ti.AddKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.URL(), Audience: "sessctl", CAFile: ti.CAFile(t)})
	claims := ti.GitHubClaims(clock.Now())
	ctx := context.Background()

	if _, err := a.Authenticate(ctx, ti.Sign(t, old, claims)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, ti.Sign(t, old, claims)); err != nil {
		t.Fatal(err)
	}
	if n := ti.JWKSHits(); n != 1 {
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
			if _, err := a.Authenticate(ctx, oidctest.SignWith(t, jose.RS256, foreign, kid, claims)); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("forged token, kid %q: err = %v", kid, err)
			}
		}
	}
	if n := ti.JWKSHits(); n != 1 {
		t.Fatalf("JWKS fetched %d times after forged tokens, want 1", n)
	}

	// The issuer rotates: a new key appears, the old one is withdrawn.
	rotated := ti.AddKey(t, jose.ES256)
	ti.Unpublish(old)
	clock.Advance(minKeyRefresh + time.Second)
	id, err := a.Authenticate(ctx, ti.Sign(t, rotated, ti.GitHubClaims(clock.Now())))
	if err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if id.Claims["repository"] != "acme/docs" {
		t.Fatalf("claims = %v", id.Claims)
	}
	if n := ti.JWKSHits(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (refreshed on unknown kid)", n)
	}
	// The withdrawn key no longer verifies.
	if _, err := a.Authenticate(ctx, ti.Sign(t, old, ti.GitHubClaims(clock.Now()))); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("token signed with a withdrawn key: err = %v", err)
	}
}

func TestParseJWKS(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.ES256)
	k, _ := ti.Key(kid)
	pub, _ := json.Marshal(jose.JSONWebKey{Key: k.Signer.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"})
	priv, _ := json.Marshal(jose.JSONWebKey{Key: k.Signer, KeyID: "private", Algorithm: "ES256"})
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
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	caFile := ti.CAFile(t)
	token := ti.Sign(t, kid, ti.GitHubClaims(clock.Now()))
	url := ti.URL()
	ti.Close()
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: url, Audience: "sessctl", CAFile: caFile})
	for range 2 { // the second is answered from the remembered failure
		_, err := a.Authenticate(context.Background(), token)
		if !errors.Is(err, ErrIssuerUnavailable) {
			t.Fatalf("err = %v, want %v", err, ErrIssuerUnavailable)
		}
	}
}

func TestOIDCJWKSUnavailable(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.URL(), Audience: "sessctl", CAFile: ti.CAFile(t)})
	is := a.issuers[ti.URL()]
	if _, err := is.getVerifier(context.Background()); err != nil {
		t.Fatal(err)
	}
	token := ti.Sign(t, kid, ti.GitHubClaims(clock.Now()))
	ti.Close() // discovered, but the keys cannot be fetched
	_, err := a.Authenticate(context.Background(), token)
	if !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("err = %v, want %v", err, ErrIssuerUnavailable)
	}
}

func TestOIDCUntrustedIssuerCertificate(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	// No CAFile: the test server's certificate is not trusted.
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.URL(), Audience: "sessctl"})
	_, err := a.Authenticate(context.Background(), ti.Sign(t, kid, ti.GitHubClaims(clock.Now())))
	if !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("err = %v, want %v", err, ErrIssuerUnavailable)
	}
}

func TestOIDCWithHTTPClient(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	a, err := New(context.Background(), Config{
		OIDC:       []OIDCIssuer{{Issuer: ti.URL(), Audience: "sessctl"}},
		HTTPClient: ti.HTTPClient(),
		Now:        clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), ti.Sign(t, kid, ti.GitHubClaims(clock.Now()))); err != nil {
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
	f.Add(oidctest.Unsigned(map[string]any{"iss": "x"}))
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
	f.Add(oidctest.Unsigned(map[string]any{"iss": "https://127.0.0.1:1"}))
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
