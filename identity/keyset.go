package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits of the JWKS fetcher.
const (
	// minKeyRefresh is the shortest time between two JWKS fetches caused
	// by tokens with an unknown key id. go-oidc's own key set refetches on
	// every signature failure, so a runner sending forged tokens could make
	// sessctl hammer the issuer (and get it rate-limited).
	minKeyRefresh = 10 * time.Second
	// maxJWKSSize bounds a JWKS response.
	maxJWKSSize = 1 << 20
)

// keySet is an oidc.KeySet over an issuer's jwks_uri: keys are cached and
// refetched when a token names a key id not in the cache, at most once per
// minRefresh. A token whose key id is known but whose signature fails is
// refused without a fetch.
type keySet struct {
	url        string
	client     *http.Client
	now        func() time.Time
	minRefresh time.Duration

	fetchMu sync.Mutex // serializes fetches
	// attempted is when the last fetch started, lastErr how it failed.
	attempted time.Time
	lastErr   error

	mu   sync.Mutex
	keys []jose.JSONWebKey
}

// VerifySignature implements oidc.KeySet. go-oidc has already checked the
// algorithm; its errors are wrapped by go-oidc as "failed to verify
// signature: ...", and a failed fetch says "fetching keys".
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, jwsAlgs())
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID

	keys := k.cached()
	if keys == nil {
		if keys, err = k.refresh(ctx); err != nil {
			return nil, err
		}
	}
	if payload, known := verifyWithKeys(jws, keys, kid); payload != nil {
		return payload, nil
	} else if known {
		return nil, errors.New("signature does not verify")
	}
	// Unknown key id (or no key id and no key fits): the issuer may have
	// rotated its keys.
	if keys, err = k.refresh(ctx); err != nil {
		return nil, err
	}
	if payload, _ := verifyWithKeys(jws, keys, kid); payload != nil {
		return payload, nil
	}
	return nil, errors.New("signature does not verify")
}

// verifyWithKeys tries the keys matching kid (all keys when kid is empty).
// known reports whether kid named a cached key.
func verifyWithKeys(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, known bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		known = kid != ""
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true
		}
	}
	return nil, known
}

// cached returns the cached keys, nil before the first successful fetch.
func (k *keySet) cached() []jose.JSONWebKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys
}

// refresh fetches the keys, unless a fetch started less than minRefresh
// ago (by this or a concurrent caller): then it returns the cache, or the
// error of that fetch if there is no cache.
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	now := k.now()
	if !k.attempted.IsZero() && now.Sub(k.attempted) < k.minRefresh {
		keys := k.cached()
		if keys == nil {
			return nil, fmt.Errorf("fetching keys: %w", k.lastErr)
		}
		return keys, nil
	}
	k.attempted = now
	keys, err := k.fetch(ctx)
	if err != nil {
		k.lastErr = err
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	k.lastErr = nil
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	return keys, nil
}

// fetch downloads and decodes the JWKS, skipping keys of unsupported types
// or algorithms.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", k.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", k.url, err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("GET %s: key set larger than %d bytes", k.url, maxJWKSSize)
	}
	return parseJWKS(body)
}

// parseJWKS decodes a JWK set, keeping the public part of the keys it can
// use.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("decode key set: %w", err)
	}
	keys := []jose.JSONWebKey{}
	for _, r := range raw.Keys {
		var meta struct {
			Alg string `json:"alg"`
			Use string `json:"use"`
		}
		if json.Unmarshal(r, &meta) != nil {
			continue
		}
		if (meta.Alg != "" && !slices.Contains(signingAlgs(), meta.Alg)) || (meta.Use != "" && meta.Use != "sig") {
			continue
		}
		var jwk jose.JSONWebKey
		if err := json.Unmarshal(r, &jwk); err != nil {
			continue // unsupported key type or bad key: ignore it (RFC 7517, 5)
		}
		if !jwk.IsPublic() {
			jwk = jwk.Public()
		}
		if jwk.Valid() {
			keys = append(keys, jwk)
		}
	}
	return keys, nil
}

// jwsAlgs is signingAlgs as go-jose values.
func jwsAlgs() []jose.SignatureAlgorithm {
	var out []jose.SignatureAlgorithm
	for _, a := range signingAlgs() {
		out = append(out, jose.SignatureAlgorithm(a))
	}
	return out
}
