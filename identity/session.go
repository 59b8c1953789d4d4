package identity

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// SessionTokenPrefix starts every session token.
const SessionTokenPrefix = "scs_"

// DefaultSessionTokenTTL is the lifetime of session tokens when
// Config.SessionTokenTTL is zero.
const DefaultSessionTokenTTL = 6 * time.Hour

// minSessionKeyLen is the shortest accepted Config.SessionKey.
const minSessionKeyLen = 32

// sessionVersion is the payload version; sessionMACTag separates session
// MACs from any other use of the key.
const (
	sessionVersion = 1
	sessionMACTag  = "sessctl session token v1\x00"
)

// sessionSkew is how far in the future a session token's iat may be.
const sessionSkew = 5 * time.Minute

// sessionPayload is what a session token carries, as JSON. A session token
// is SessionTokenPrefix + base64url(payload) + "." + base64url(HMAC-SHA256(
// key, sessionMACTag + base64url(payload))).
type sessionPayload struct {
	V        int               `json:"v"`
	Issuer   string            `json:"iss"`
	Subject  string            `json:"sub"`
	Claims   map[string]string `json:"claims,omitempty"`
	IssuedAt int64             `json:"iat"`
	Expiry   int64             `json:"exp"`
	ID       string            `json:"jti"`
}

// NewSessionKey returns a random key for Config.SessionKey.
func NewSessionKey() ([]byte, error) {
	k := make([]byte, minSessionKeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("identity: new session key: %w", err)
	}
	return k, nil
}

// Exchange verifies an OIDC ID token and returns a sessctl session token
// bound to the same issuer, subject and pipeline claims, valid for
// Config.SessionTokenTTL, and its expiry. CI ID tokens live minutes; a
// session token lets a long job keep calling. Only OIDC tokens can be
// exchanged (ErrNotExchangeable otherwise); refusals are *AuthError as for
// Authenticate.
//
// A session token is checked again on each use against the issuer's
// current configuration (issuer still trusted, required claims still
// met). It cannot be revoked one by one: rotating the session key revokes
// them all.
func (a *Authenticator) Exchange(ctx context.Context, oidcToken string) (token string, expires time.Time, err error) {
	raw := strings.TrimSpace(oidcToken)
	switch {
	case raw == "":
		return "", time.Time{}, authErr(ErrNoCredential)
	case len(raw) > maxCredentialLen:
		return "", time.Time{}, authErr(ErrMalformed)
	case strings.HasPrefix(raw, SessionTokenPrefix), strings.Count(raw, ".") != 2:
		return "", time.Time{}, authErr(ErrNotExchangeable)
	}
	id, err := a.authOIDC(ctx, raw, HashToken(raw))
	if err != nil {
		return "", time.Time{}, err
	}
	now := a.now()
	expires = now.Add(a.sessionTTL).Truncate(time.Second)
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("identity: exchange: %w", err)
	}
	p := sessionPayload{
		V:        sessionVersion,
		Issuer:   id.Issuer,
		Subject:  id.Subject,
		Claims:   id.Claims,
		IssuedAt: now.Unix(),
		Expiry:   expires.Unix(),
		ID:       base64.RawURLEncoding.EncodeToString(jti[:]),
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("identity: exchange: %w", err)
	}
	enc := base64.RawURLEncoding.EncodeToString(body)
	mac := a.sessionMAC(enc)
	return SessionTokenPrefix + enc + "." + base64.RawURLEncoding.EncodeToString(mac), expires, nil
}

// sessionMAC returns the MAC of an encoded payload.
func (a *Authenticator) sessionMAC(encPayload string) []byte {
	m := hmac.New(sha256.New, a.sessionKey)
	m.Write([]byte(sessionMACTag))
	m.Write([]byte(encPayload))
	return m.Sum(nil)
}

// parseSessionToken checks a session token's MAC and decodes its payload.
// It returns ErrMalformed or ErrBadSignature.
func (a *Authenticator) parseSessionToken(raw string) (*sessionPayload, error) {
	rest, ok := strings.CutPrefix(raw, SessionTokenPrefix)
	if !ok {
		return nil, ErrMalformed
	}
	enc, sig, ok := strings.Cut(rest, ".")
	if !ok || enc == "" || sig == "" {
		return nil, ErrMalformed
	}
	mac, err := decodeB64URL(sig)
	if err != nil || len(mac) != sha256.Size {
		return nil, ErrMalformed
	}
	if !hmac.Equal(mac, a.sessionMAC(enc)) {
		return nil, ErrBadSignature
	}
	body, err := decodeB64URL(enc)
	if err != nil {
		return nil, ErrMalformed
	}
	var p sessionPayload
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || p.V != sessionVersion || p.Issuer == "" {
		return nil, ErrMalformed
	}
	return &p, nil
}

// authSession verifies a session token made by Exchange.
func (a *Authenticator) authSession(ctx context.Context, raw, tokenHash string) (*Identity, error) {
	p, err := a.parseSessionToken(raw)
	if err != nil {
		return nil, authErr(err)
	}
	now := a.now()
	exp := time.Unix(p.Expiry, 0)
	if !now.Before(exp) {
		return nil, authErr(ErrExpired)
	}
	if time.Unix(p.IssuedAt, 0).After(now.Add(sessionSkew)) {
		return nil, authErr(ErrNotYetValid)
	}
	is := a.issuers[p.Issuer]
	if is == nil {
		a.log.DebugContext(ctx, "identity: session token from an issuer no longer configured", "issuer", p.Issuer)
		return nil, authErr(ErrUnknownIssuer)
	}
	for k, glob := range is.cfg.Claims {
		if !globMatch(glob, p.Claims[k]) {
			a.log.DebugContext(ctx, "identity: session token refused", "issuer", p.Issuer, "reason", "required claim", "claim", k)
			return nil, authErr(ErrClaimsNotAccepted)
		}
	}
	claims := make(map[string]string, len(p.Claims))
	for k, v := range p.Claims {
		if isPipelineClaim(k) && v != "" {
			claims[k] = v
		}
	}
	return &Identity{
		Method:    MethodSessionToken,
		Issuer:    p.Issuer,
		Subject:   p.Subject,
		TokenHash: tokenHash,
		Claims:    claims,
		Expiry:    exp,
	}, nil
}

// decodeB64URL decodes unpadded base64url strictly: a string whose last
// character carries non-zero unused bits is refused, so that every token
// and signature has exactly one accepted spelling (anything matching
// tokens by their hash, as revocation and records do, sees one token).
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(s)
}
