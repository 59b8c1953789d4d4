// Package identity decides who is calling sessctl and what they may do.
//
// A runner presents one bearer credential: a static runner token (kept only
// as its SHA-256 in memory), a CI job's OIDC ID token (verified against the
// configured issuers: signature, issuer, audience, expiry, not-before and
// required claim globs), or a sessctl session token obtained by exchanging
// an OIDC token (see [Authenticator.Exchange]). [Authenticator.Authenticate]
// turns the credential into an [Identity]; [Match] then picks the first
// [Policy] that applies to it.
//
// The package knows nothing of storage or of HTTP proxying. Credentials are
// never logged and never appear in errors: an [AuthError] carries only a
// short reason that is safe to show the runner.
package identity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"github.com/sessctl/sessctl/internal/claims"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Authentication methods, the values of Identity.Method.
const (
	MethodRunnerToken  = "runner_token"
	MethodOIDC         = "oidc"
	MethodSessionToken = "session_token"
)

// maxCredentialLen bounds what Authenticate will parse. CI ID tokens are a
// few KiB at most.
const maxCredentialLen = 16 << 10

// Identity is a verified caller.
type Identity struct {
	// Method is one of MethodRunnerToken, MethodOIDC or MethodSessionToken.
	Method string
	// Runner is the runner's configured name (runner tokens only).
	Runner string
	// Issuer and Subject are the OIDC iss and sub claims (OIDC and session
	// tokens).
	Issuer, Subject string
	// TokenHash is the hex SHA-256 of the presented credential, the only
	// trace of it that may be stored.
	TokenHash string
	// Claims holds the pipeline claims of the token (see PipelineClaims),
	// as strings; other claims are dropped.
	Claims map[string]string
	// Expiry is when the credential stops being valid; zero for runner
	// tokens. A proxy that authenticates once per connection should check
	// it again on each request.
	Expiry time.Time
}

// String returns a one-line summary of the identity for humans and
// approval requests, such as "runner ci-1" or
// "oidc repo:acme/docs:ref:refs/heads/main (https://token.actions.githubusercontent.com)".
func (id *Identity) String() string {
	if id == nil {
		return "anonymous"
	}
	switch id.Method {
	case MethodRunnerToken:
		return "runner " + id.Runner
	case MethodOIDC, MethodSessionToken:
		return "oidc " + id.Subject + " (" + id.Issuer + ")"
	default:
		return id.Method
	}
}

// Caller returns the person or machine behind the identity: the runner
// name, else the actor claim (GitHub actor, GitLab user_login), else the
// subject. Records, the UI, the CLI and approval requests all name the
// caller with it.
func (id *Identity) Caller() string {
	if id == nil {
		return ""
	}
	return claims.Caller(id.Runner, id.Subject, id.Claims)
}

// Claim returns the first non-empty claim among names (say "repository",
// "project_path" for GitHub's and GitLab's repository), or "".
func (id *Identity) Claim(names ...string) string {
	if id == nil {
		return ""
	}
	return claims.First(id.Claims, names...)
}

// Config configures an Authenticator.
type Config struct {
	// Runners are the static runner tokens.
	Runners []Runner
	// OIDC lists the trusted CI token issuers.
	OIDC []OIDCIssuer
	// SessionTokenTTL is how long an exchanged session token lives;
	// DefaultSessionTokenTTL when zero.
	SessionTokenTTL time.Duration
	// SessionKey signs session tokens (HMAC-SHA256, at least 32 bytes; see
	// NewSessionKey). The caller persists it so that session tokens survive
	// a restart; when empty, a random key is made and tokens die with the
	// process.
	SessionKey []byte
	// HTTPClient fetches OIDC discovery documents and keys. When nil, a
	// client with sane timeouts that ignores HTTPS_PROXY is used.
	HTTPClient *http.Client
	// Logger receives debug lines about refusals (never a credential).
	Logger *slog.Logger
	// Now returns the current time; time.Now when nil. Tests set it.
	Now func() time.Time
}

// Authenticator checks credentials. It is safe for concurrent use.
type Authenticator struct {
	runners    []runnerEntry
	issuers    map[string]*issuer
	sessionKey []byte
	sessionTTL time.Duration
	now        func() time.Time
	log        *slog.Logger
}

// New checks cfg and returns an Authenticator. It does no network I/O: OIDC
// issuers are discovered on first use and rediscovered after a failure.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	a := &Authenticator{
		sessionTTL: cfg.SessionTokenTTL,
		now:        cfg.Now,
		log:        cfg.Logger,
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if a.runners, err = compileRunners(cfg.Runners, a.log); err != nil {
		return nil, err
	}
	if a.issuers, err = compileIssuers(cfg.OIDC, cfg.HTTPClient, a.now); err != nil {
		return nil, err
	}
	if a.sessionTTL < 0 {
		return nil, fmt.Errorf("identity: session token TTL %v is negative", a.sessionTTL)
	}
	if a.sessionTTL == 0 {
		a.sessionTTL = DefaultSessionTokenTTL
	}
	switch {
	case len(cfg.SessionKey) == 0:
		if a.sessionKey, err = NewSessionKey(); err != nil {
			return nil, err
		}
		if len(a.issuers) > 0 {
			a.log.InfoContext(ctx, "identity: no session key configured; session tokens will not survive a restart")
		}
	case len(cfg.SessionKey) < minSessionKeyLen:
		return nil, fmt.Errorf("identity: session key is %d bytes, want at least %d", len(cfg.SessionKey), minSessionKeyLen)
	default:
		a.sessionKey = append([]byte(nil), cfg.SessionKey...)
	}
	return a, nil
}

// Authenticate verifies credential, the bearer value a runner presented (see
// ParseCredential), and returns who it is. A refused credential gives an
// *AuthError wrapping one of the Err* sentinels.
//
// A credential is first compared, in constant time, with every runner
// token's hash; failing that, a sessctl session token or an OIDC ID token
// (three dot-separated parts) is verified.
func (a *Authenticator) Authenticate(ctx context.Context, credential string) (*Identity, error) {
	cred := strings.TrimSpace(credential)
	if cred == "" {
		return nil, authErr(ErrNoCredential)
	}
	if len(cred) > maxCredentialLen {
		return nil, authErr(ErrMalformed)
	}
	sum := sha256.Sum256([]byte(cred))
	tokenHash := hex.EncodeToString(sum[:])
	if r := a.matchRunner(sum); r != nil {
		return &Identity{Method: MethodRunnerToken, Runner: r.name, TokenHash: tokenHash}, nil
	}
	switch {
	case strings.HasPrefix(cred, SessionTokenPrefix):
		return a.authSession(ctx, cred, tokenHash)
	case strings.Count(cred, ".") == 2:
		return a.authOIDC(ctx, cred, tokenHash)
	}
	return nil, authErr(ErrUnknownToken)
}

// HashToken returns the hex SHA-256 of tok, the form in which runner tokens
// are configured and credentials are recorded.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// ParseCredential extracts the credential from an Authorization or
// Proxy-Authorization header value: the token of "Bearer <token>", or for
// "Basic <base64(user:password)>" the password (the user name when the
// password is empty, as in HTTPS_PROXY=http://<token>@host:port). It
// returns "" when there is none.
func ParseCredential(header string) string {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok {
		return ""
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return ""
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		if pass != "" {
			return pass
		}
		return user
	}
	return ""
}
