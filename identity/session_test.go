package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sessctl/sessctl/identity/oidctest"
)

func TestExchange(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	key, err := NewSessionKey()
	if err != nil {
		t.Fatal(err)
	}
	iss := OIDCIssuer{Issuer: ti.URL(), Audience: "sessctl", Claims: map[string]string{"repository_owner": "acme"}, CAFile: ti.CAFile(t)}
	a, err := New(context.Background(), Config{OIDC: []OIDCIssuer{iss}, SessionKey: key, SessionTokenTTL: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	oidcToken := ti.Sign(t, kid, ti.GitHubClaims(clock.Now()))
	viaOIDC, err := a.Authenticate(ctx, oidcToken)
	if err != nil {
		t.Fatal(err)
	}

	tok, exp, err := a.Exchange(ctx, oidcToken)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, SessionTokenPrefix) || strings.Count(tok, ".") != 1 {
		t.Fatalf("session token %q", tok)
	}
	if d := exp.Sub(clock.Now()); d > time.Hour || d < time.Hour-time.Second {
		t.Fatalf("expires in %v, want 1h", d)
	}

	// The OIDC token expires after 5 minutes; the session token lives on.
	clock.Advance(30 * time.Minute)
	if _, err := a.Authenticate(ctx, oidcToken); !errors.Is(err, ErrExpired) {
		t.Fatalf("OIDC token after 30m: err = %v", err)
	}
	id, err := a.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Method != MethodSessionToken || id.Issuer != viaOIDC.Issuer || id.Subject != viaOIDC.Subject || !id.Expiry.Equal(exp) {
		t.Fatalf("identity = %+v", id)
	}
	if id.TokenHash != HashToken(tok) || id.TokenHash == viaOIDC.TokenHash {
		t.Fatalf("token hash %s", id.TokenHash)
	}
	if len(id.Claims) != len(viaOIDC.Claims) || id.Claims["workflow_ref"] != viaOIDC.Claims["workflow_ref"] {
		t.Fatalf("claims = %v, want %v", id.Claims, viaOIDC.Claims)
	}
	if p := Match([]Policy{{Name: "acme", Match: map[string]string{"repository_owner": "acme"}}}, id); p == nil {
		t.Fatal("session identity does not match the claims policy")
	}

	// Past its TTL the session token is refused.
	clock.Advance(31 * time.Minute)
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("after TTL: err = %v", err)
	}

	// Another key: bad signature. Same key, issuer no longer trusted or
	// its required claims changed: refused.
	clock.Advance(-time.Hour)
	other, _ := New(ctx, Config{OIDC: []OIDCIssuer{iss}, Now: clock.Now})
	if _, err := other.Authenticate(ctx, tok); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key: err = %v", err)
	}
	noIssuer, _ := New(ctx, Config{SessionKey: key, Now: clock.Now})
	if _, err := noIssuer.Authenticate(ctx, tok); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("issuer removed: err = %v", err)
	}
	stricter := iss
	stricter.Claims = map[string]string{"repository_owner": "acme", "environment": "staging"}
	strict, _ := New(ctx, Config{OIDC: []OIDCIssuer{stricter}, SessionKey: key, Now: clock.Now})
	if _, err := strict.Authenticate(ctx, tok); !errors.Is(err, ErrClaimsNotAccepted) {
		t.Fatalf("stricter claims: err = %v", err)
	}
}

func TestExchangeRefusals(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.ES256)
	clock := &fakeClock{t: time.Now()}
	runnerTok := "sct_exchange-runner-token"
	a, err := New(context.Background(), Config{
		Runners: []Runner{{Name: "r", Token: runnerTok}},
		OIDC:    []OIDCIssuer{{Issuer: ti.URL(), Audience: "sessctl", CAFile: ti.CAFile(t)}},
		Now:     clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	good := ti.GitHubClaims(clock.Now())
	session, _, err := a.Exchange(context.Background(), ti.Sign(t, kid, good))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token string
		err         error
	}{
		{"empty", "", ErrNoCredential},
		{"runner token", runnerTok, ErrNotExchangeable},
		{"session token", session, ErrNotExchangeable},
		{"expired", ti.Sign(t, kid, with(good, "exp", clock.Now().Add(-time.Second).Unix())), ErrExpired},
		{"wrong audience", ti.Sign(t, kid, with(good, "aud", "nope")), ErrWrongAudience},
		{"unsigned", oidctest.Unsigned(good), ErrUnsigned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, _, err := a.Exchange(context.Background(), tt.token)
			if !errors.Is(err, tt.err) || tok != "" {
				t.Fatalf("Exchange = %q, %v; want %v", tok, err, tt.err)
			}
		})
	}
}

func TestSessionTokenTampering(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.URL(), Audience: "sessctl", CAFile: ti.CAFile(t)})
	tok, _, err := a.Exchange(context.Background(), ti.Sign(t, kid, ti.GitHubClaims(clock.Now())))
	if err != nil {
		t.Fatal(err)
	}
	enc, mac, _ := strings.Cut(strings.TrimPrefix(tok, SessionTokenPrefix), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(enc)
	forged := strings.Replace(string(payload), `"acme/docs"`, `"acme/prod"`, 1)
	tests := []struct {
		name, token string
		err         error
	}{
		{"claims changed", SessionTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + mac, ErrBadSignature},
		{"mac truncated", tok[:len(tok)-2], ErrMalformed},
		{"no mac", SessionTokenPrefix + enc, ErrMalformed},
		{"empty", SessionTokenPrefix, ErrMalformed},
		{"mac of other length", SessionTokenPrefix + enc + ".AAAA", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Authenticate(context.Background(), tt.token); !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestSessionConfig(t *testing.T) {
	if _, err := New(context.Background(), Config{SessionKey: []byte("short")}); err == nil || !strings.Contains(err.Error(), "session key") {
		t.Fatalf("short key: err = %v", err)
	}
	if _, err := New(context.Background(), Config{SessionTokenTTL: -time.Second}); err == nil {
		t.Fatal("negative TTL accepted")
	}
	a, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a.sessionTTL != DefaultSessionTokenTTL || len(a.sessionKey) < minSessionKeyLen {
		t.Fatalf("defaults: ttl %v, key %d bytes", a.sessionTTL, len(a.sessionKey))
	}
}

func FuzzParseSessionToken(f *testing.F) {
	key := make([]byte, minSessionKeyLen)
	a, err := New(context.Background(), Config{SessionKey: key})
	if err != nil {
		f.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"iss":"https://x","sub":"s","iat":0,"exp":1}`))
	f.Add(SessionTokenPrefix + enc + "." + base64.RawURLEncoding.EncodeToString(a.sessionMAC(enc)))
	f.Add(SessionTokenPrefix + "e30.AAAA")
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := a.parseSessionToken(raw)
		if err != nil {
			if err != ErrMalformed && err != ErrBadSignature {
				t.Fatalf("err = %v", err)
			}
			return
		}
		if p.V != sessionVersion || p.Issuer == "" {
			t.Fatalf("accepted %+v", p)
		}
	})
}
