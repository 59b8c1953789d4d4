package oidctest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func getJSON(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func fetchJWKS(t *testing.T, is *Issuer) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, is.HTTPClient(), is.URL()+JWKSPath, &set)
	return set
}

func TestIssuer(t *testing.T) {
	is := NewIssuer(t)
	if !strings.HasPrefix(is.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %q", is.URL())
	}
	var disco struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, is.HTTPClient(), is.URL()+DiscoveryPath, &disco)
	if disco.Issuer != is.URL() || disco.JWKSURI != is.URL()+JWKSPath {
		t.Fatalf("discovery %+v", disco)
	}

	algs := []jose.SignatureAlgorithm{jose.RS256, jose.PS384, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}
	var kids []string
	for _, alg := range algs {
		kids = append(kids, is.AddKey(t, alg))
	}
	set := fetchJWKS(t, is)
	if len(set.Keys) != len(algs) {
		t.Fatalf("JWKS has %d keys, want %d", len(set.Keys), len(algs))
	}
	claims := is.GitHubClaims(time.Now())
	for i, kid := range kids {
		keys := set.Key(kid)
		if len(keys) != 1 || !keys[0].IsPublic() || keys[0].Algorithm != string(algs[i]) {
			t.Fatalf("JWKS entry for %s: %+v", kid, keys)
		}
		tok := is.Sign(t, kid, claims)
		jws, err := jose.ParseSigned(tok, algs)
		if err != nil {
			t.Fatalf("%s: %v", algs[i], err)
		}
		if jws.Signatures[0].Header.KeyID != kid {
			t.Fatalf("%s: kid %q", algs[i], jws.Signatures[0].Header.KeyID)
		}
		payload, err := jws.Verify(keys[0])
		if err != nil {
			t.Fatalf("%s: token does not verify with the published key: %v", algs[i], err)
		}
		var got map[string]any
		if err := json.Unmarshal(payload, &got); err != nil || got["iss"] != is.URL() || got["repository"] != "acme/docs" || got["aud"] != Audience {
			t.Fatalf("%s: payload %s (%v)", algs[i], payload, err)
		}
	}

	// Unpublished keys leave the JWKS but still sign.
	is.Unpublish(kids[0])
	if set := fetchJWKS(t, is); len(set.Keys) != len(algs)-1 || len(set.Key(kids[0])) != 0 {
		t.Fatalf("after Unpublish: %d keys", len(set.Keys))
	}
	k, ok := is.Key(kids[0])
	if !ok || k.ID != kids[0] || k.Alg != jose.RS256 || k.Signer == nil {
		t.Fatalf("Key(%s) = %+v, %v", kids[0], k, ok)
	}
	if _, ok := is.Key("no-such-key"); ok {
		t.Fatal("Key of an unknown kid")
	}
	if n := is.JWKSHits(); n != 2 {
		t.Fatalf("JWKSHits = %d, want 2", n)
	}
}

func TestSignWithNoKeyID(t *testing.T) {
	is := NewIssuer(t)
	k, _ := is.Key(is.AddKey(t, jose.ES256))
	tok := SignWith(t, jose.ES256, k.Signer, "", map[string]any{"sub": "x"})
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if kid := jws.Signatures[0].Header.KeyID; kid != "" {
		t.Fatalf("kid %q", kid)
	}
	if _, err := jws.Verify(k.Signer.Public()); err != nil {
		t.Fatal(err)
	}
}

func TestUnsigned(t *testing.T) {
	tok := Unsigned(map[string]any{"iss": "https://x"})
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[2] != "" {
		t.Fatalf("token %q", tok)
	}
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if string(h) != `{"alg":"none","typ":"JWT"}` || string(p) != `{"iss":"https://x"}` {
		t.Fatalf("header %s payload %s", h, p)
	}
	if _, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256}); err == nil {
		t.Fatal("go-jose accepted an unsigned token")
	}
}
