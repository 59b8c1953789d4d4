package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCIssuer is a trusted CI token issuer.
type OIDCIssuer struct {
	// Issuer is the https issuer URL, exactly as in the tokens' iss claim
	// (e.g. https://token.actions.githubusercontent.com).
	Issuer string `yaml:"issuer"`
	// Audience is the aud value tokens must carry (e.g. "sessctl").
	Audience string `yaml:"audience"`
	// Claims are required claim values: pipeline claim (see
	// PipelineClaims) -> path.Match glob. A token lacking one is refused.
	Claims map[string]string `yaml:"claims,omitempty"`
	// CAFile optionally names a PEM bundle trusted, in addition to the
	// system roots, for this issuer's discovery document and keys.
	CAFile string `yaml:"ca_file,omitempty"`
}

// signingAlgs are the JWS algorithms accepted on ID tokens: asymmetric
// only, never "none" nor HMAC.
func signingAlgs() []string {
	return []string{
		oidc.RS256, oidc.RS384, oidc.RS512,
		oidc.ES256, oidc.ES384, oidc.ES512,
		oidc.PS256, oidc.PS384, oidc.PS512,
		oidc.EdDSA,
	}
}

// nbfLeeway is the clock skew go-oidc allows on not-before.
const nbfLeeway = 5 * time.Minute

// Defaults for the HTTP client that fetches discovery documents and keys.
const (
	httpTimeout     = 30 * time.Second
	rediscoverAfter = 10 * time.Second
)

// issuer is a compiled OIDCIssuer with its lazily discovered verifier.
type issuer struct {
	cfg    OIDCIssuer
	client *http.Client
	now    func() time.Time
	// retryAfter is how long a failed discovery is remembered.
	retryAfter time.Duration

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	failedAt time.Time
}

// compileIssuers validates the issuer configs and prepares their HTTP
// clients.
func compileIssuers(cfgs []OIDCIssuer, base *http.Client, now func() time.Time) (map[string]*issuer, error) {
	out := make(map[string]*issuer, len(cfgs))
	for i, c := range cfgs {
		if c.Issuer == "" {
			return nil, fmt.Errorf("identity: oidc issuer #%d: missing issuer", i+1)
		}
		u, err := url.Parse(c.Issuer)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("identity: oidc issuer %q: not an https URL", c.Issuer)
		}
		if out[c.Issuer] != nil {
			return nil, fmt.Errorf("identity: oidc issuer %q: listed twice", c.Issuer)
		}
		if c.Audience == "" {
			return nil, fmt.Errorf("identity: oidc issuer %q: missing audience", c.Issuer)
		}
		for k, glob := range c.Claims {
			if !isPipelineClaim(k) {
				return nil, fmt.Errorf("identity: oidc issuer %q: claim %q is not a pipeline claim", c.Issuer, k)
			}
			if _, err := path.Match(glob, ""); err != nil {
				return nil, fmt.Errorf("identity: oidc issuer %q: claim %s: bad glob %q: %w", c.Issuer, k, glob, err)
			}
		}
		client, err := issuerClient(base, c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("identity: oidc issuer %q: %w", c.Issuer, err)
		}
		out[c.Issuer] = &issuer{cfg: c, client: client, now: now, retryAfter: rediscoverAfter}
	}
	return out, nil
}

// issuerClient returns the HTTP client for one issuer: base (or a default
// that never uses HTTPS_PROXY, so sessctl cannot loop through itself),
// trusting caFile in addition to the system roots.
func issuerClient(base *http.Client, caFile string) (*http.Client, error) {
	var c http.Client
	if base != nil {
		c = *base
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		c.Transport = t
	}
	if c.Timeout == 0 {
		c.Timeout = httpTimeout
	}
	if caFile == "" {
		return &c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate", caFile)
	}
	var t *http.Transport
	switch rt := c.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
	case *http.Transport:
		t = rt.Clone()
	default:
		return nil, fmt.Errorf("CA file needs an *http.Transport, the HTTP client has %T", rt)
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.RootCAs = pool
	c.Transport = t
	return &c, nil
}

// getVerifier discovers the issuer on first use. A failure is remembered
// for retryAfter so that a dead issuer is not hammered.
func (is *issuer) getVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	if !is.failedAt.IsZero() && time.Since(is.failedAt) < is.retryAfter {
		return nil, errors.New("discovery failed recently")
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, is.client), httpTimeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, is.cfg.Issuer)
	if err != nil {
		is.failedAt = time.Now()
		return nil, err
	}
	var meta struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil {
		is.failedAt = time.Now()
		return nil, err
	}
	if u, err := url.Parse(meta.JWKSURL); err != nil || u.Scheme != "https" || u.Host == "" {
		is.failedAt = time.Now()
		return nil, fmt.Errorf("discovery document: jwks_uri %q is not an https URL", meta.JWKSURL)
	}
	is.failedAt = time.Time{}
	keys := &keySet{url: meta.JWKSURL, client: is.client, now: is.now, minRefresh: minKeyRefresh}
	is.verifier = oidc.NewVerifier(is.cfg.Issuer, keys, &oidc.Config{
		ClientID:             is.cfg.Audience,
		SupportedSigningAlgs: signingAlgs(),
		Now:                  is.now,
	})
	return is.verifier, nil
}

// jwtHeader is the part of a JOSE header looked at before verification.
type jwtHeader struct {
	Alg string `json:"alg"`
}

// peekJWT splits a compact JWS and decodes its header and claims without
// verifying anything, to pick the issuer and to name what is wrong with a
// token in a way go-oidc's errors do not. It returns ErrMalformed or
// ErrUnsigned.
func peekJWT(raw string) (jwtHeader, map[string]json.RawMessage, error) {
	var h jwtHeader
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return h, nil, ErrMalformed
	}
	hb, err := decodeB64URL(parts[0])
	if err != nil {
		return h, nil, ErrMalformed
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, nil, ErrMalformed
	}
	pb, err := decodeB64URL(parts[1])
	if err != nil {
		return h, nil, ErrMalformed
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(pb, &claims); err != nil || claims == nil {
		return h, nil, ErrMalformed
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") || parts[2] == "" {
		return h, nil, ErrUnsigned
	}
	if _, err := decodeB64URL(parts[2]); err != nil {
		return h, nil, ErrMalformed
	}
	return h, claims, nil
}

// authOIDC verifies an OIDC ID token.
func (a *Authenticator) authOIDC(ctx context.Context, raw, tokenHash string) (*Identity, error) {
	_, claims, err := peekJWT(raw)
	if err != nil {
		return nil, authErr(err)
	}
	iss := claimString(claims["iss"])
	is := a.issuers[iss]
	if is == nil {
		a.log.DebugContext(ctx, "identity: token from unknown issuer", "issuer", truncate(iss, 200))
		return nil, authErr(ErrUnknownIssuer)
	}
	v, err := is.getVerifier(ctx)
	if err != nil {
		a.log.WarnContext(ctx, "identity: oidc discovery failed", "issuer", iss, "err", err)
		return nil, authErr(ErrIssuerUnavailable)
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		sentinel := classifyVerifyError(err, claims, is.cfg, a.now())
		a.log.DebugContext(ctx, "identity: oidc token refused", "issuer", iss, "reason", reason(sentinel), "err", err)
		return nil, authErr(sentinel)
	}
	var verified map[string]json.RawMessage
	if err := tok.Claims(&verified); err != nil {
		return nil, authErr(ErrMalformed)
	}
	for k, glob := range is.cfg.Claims {
		if !globMatch(glob, claimString(verified[k])) {
			a.log.DebugContext(ctx, "identity: oidc token refused", "issuer", iss, "reason", "required claim", "claim", k)
			return nil, authErr(ErrClaimsNotAccepted)
		}
	}
	return &Identity{
		Method:    MethodOIDC,
		Issuer:    tok.Issuer,
		Subject:   tok.Subject,
		TokenHash: tokenHash,
		Claims:    pipelineClaims(verified),
		Expiry:    tok.Expiry,
	}, nil
}

// classifyVerifyError names why go-oidc refused a token. go-oidc checks the
// signature first, so once a failure is known not to be about the signature
// or keys, the claims are authentic and can be examined here.
func classifyVerifyError(err error, claims map[string]json.RawMessage, cfg OIDCIssuer, now time.Time) error {
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) {
		return ErrExpired
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "fetching keys"):
		return ErrIssuerUnavailable
	case strings.HasPrefix(msg, "failed to verify signature"),
		strings.HasPrefix(msg, "oidc: malformed jwt"), // e.g. an algorithm outside signingAlgs
		strings.Contains(msg, "signature"):
		return ErrBadSignature
	}
	if claimString(claims["iss"]) != cfg.Issuer {
		return ErrWrongIssuer
	}
	if !audienceContains(claims["aud"], cfg.Audience) {
		return ErrWrongAudience
	}
	if nbf, ok := claimTime(claims["nbf"]); ok && now.Add(nbfLeeway).Before(nbf) {
		return ErrNotYetValid
	}
	return ErrInvalid
}

// audienceContains reports whether the aud claim (a string or a list of
// strings) contains want.
func audienceContains(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if a == want {
				return true
			}
		}
	}
	return false
}

// claimTime decodes a NumericDate claim.
func claimTime(raw json.RawMessage) (time.Time, bool) {
	var f float64
	if len(raw) == 0 || json.Unmarshal(raw, &f) != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// claimString renders a scalar claim as a string: strings as they are,
// numbers in their JSON form, booleans as "true"/"false". Objects, lists
// and null give "".
func claimString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case 't', 'f':
		var b bool
		if json.Unmarshal(raw, &b) == nil {
			return strconv.FormatBool(b)
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n.String()
		}
	}
	return ""
}

// pipelineClaims keeps the non-empty pipeline claims of a token.
func pipelineClaims(claims map[string]json.RawMessage) map[string]string {
	out := make(map[string]string)
	for _, k := range PipelineClaims() {
		if v := claimString(claims[k]); v != "" {
			out[k] = v
		}
	}
	return out
}

// globMatch reports whether a non-empty value matches glob.
func globMatch(glob, value string) bool {
	if value == "" {
		return false
	}
	ok, err := path.Match(glob, value)
	return err == nil && ok
}

// truncate shortens s to at most n bytes for logging.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
