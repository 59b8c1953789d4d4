package proxy

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/identity/oidctest"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/store"
)

const (
	chatURL  = "https://api.openai.com/v1/chat/completions"
	tokenURL = "https://" + TokenHost + tokenPath
)

// wantGitHubClaims are the pipeline claims of oidctest's GitHub token as
// sessctl keeps them (repository_visibility, run_number, actor_id, jti and
// the empty head_ref/base_ref are not pipeline claims).
var wantGitHubClaims = map[string]string{
	"repository": "acme/docs", "repository_owner": "acme", "repository_owner_id": "65", "repository_id": "74",
	"workflow": "docs bot", "workflow_ref": "acme/docs/.github/workflows/bot.yml@refs/heads/main",
	"job_workflow_ref": "acme/docs/.github/workflows/bot.yml@refs/heads/main", "run_id": "6729", "run_attempt": "1",
	"sha": "d6cd1e2bd19e03a81132a23b2025920577f84e37", "ref": "refs/heads/main", "ref_type": "branch",
	"actor": "octocat", "event_name": "push", "environment": "production", "runner_environment": "github-hosted",
}

const wantGitHubSubject = "repo:acme/docs:environment:production"

// oidcEnv is an env whose authenticator also trusts a local OIDC issuer
// (audience "sessctl") and which serves the token exchange.
type oidcEnv struct {
	*env
	iss *oidctest.Issuer
	kid string // the issuer's signing key
}

func newOIDCEnv(t *testing.T, handler http.HandlerFunc, opts ...envOption) *oidcEnv {
	t.Helper()
	iss := oidctest.NewIssuer(t)
	kid := iss.AddKey(t, jose.RS256)
	auth, err := identity.New(context.Background(), identity.Config{
		Runners: []identity.Runner{{Name: "ci-1", TokenSHA256: identity.HashToken(testRunnerToken)}},
		OIDC:    []identity.OIDCIssuer{{Issuer: iss.URL(), Audience: oidctest.Audience, CAFile: iss.CAFile(t)}},
		Logger:  quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	withOIDC := func(o *Options) {
		o.Auth = auth
		o.Exchanger = auth
	}
	return &oidcEnv{env: newEnv(t, handler, append([]envOption{withOIDC}, opts...)...), iss: iss, kid: kid}
}

// token returns a GitHub-shaped ID token valid now, with changes to its
// claims: a nil value deletes the claim.
func (e *oidcEnv) token(changes map[string]any) string {
	e.t.Helper()
	claims := e.iss.GitHubClaims(time.Now())
	for k, v := range changes {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return e.iss.Sign(e.t, e.kid, claims)
}

// lastRecord returns the newest record of the log.
func (e *oidcEnv) lastRecord() *store.Record {
	e.t.Helper()
	recs := e.records()
	if len(recs) == 0 {
		e.t.Fatal("no records")
	}
	return recs[len(recs)-1]
}

// checkUpstreamGot checks that the n-th request the upstream saw carried
// key and none of the runner's credentials.
func (e *oidcEnv) checkUpstreamGot(n int, key string, creds ...string) {
	e.t.Helper()
	seen := e.upstreamRequests()
	if len(seen) != n {
		e.t.Fatalf("upstream saw %d requests, want %d", len(seen), n)
	}
	last := seen[n-1]
	if got := last.Header.Get("Authorization"); got != "Bearer "+key {
		e.t.Errorf("upstream Authorization = %.20q..., want the real key", got)
	}
	for k, vs := range last.Header {
		for _, v := range vs {
			for _, c := range creds {
				if strings.Contains(v, c) {
					e.t.Errorf("runner credential reached the upstream in %s", k)
				}
			}
		}
	}
}

// assertNoTokenInDB checks that neither a token nor its signature part is
// anywhere in the database file.
func assertNoTokenInDB(t *testing.T, e *env, tokens ...string) {
	t.Helper()
	var secrets []string
	for _, tok := range tokens {
		secrets = append(secrets, tok)
		if i := strings.LastIndexByte(tok, '.'); i >= 0 && len(tok)-i > 16 {
			secrets = append(secrets, tok[i+1:])
		}
	}
	assertNoSecretInDB(t, e, secrets...)
}

func TestOIDCTokenAuthenticates(t *testing.T) {
	e := newOIDCEnv(t, okJSON)
	tok := e.token(nil)
	resp, body := post(t, e.client, chatURL, tok, chatBody)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"content":"hi"`) {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	e.checkUpstreamGot(1, testRealKey, tok)

	rec := e.lastRecord()
	if rec.Kind != store.KindExchange || rec.Outcome != store.OutcomeForwarded || rec.Status != 200 || rec.Host != "api.openai.com" {
		t.Fatalf("record = %+v", rec)
	}
	id := rec.Identity
	if id.Method != identity.MethodOIDC || id.Issuer != e.iss.URL() || id.Subject != wantGitHubSubject || id.Runner != "" {
		t.Errorf("record identity = %+v", id)
	}
	if id.TokenHash != identity.HashToken(tok) {
		t.Errorf("token_sha256 = %q, want the token's SHA-256", id.TokenHash)
	}
	if !maps.Equal(id.Claims, wantGitHubClaims) {
		t.Errorf("claims = %v\nwant     %v", id.Claims, wantGitHubClaims)
	}
	_, req, ans, err := e.store.Get(rec.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if string(req) != chatBody || !strings.Contains(string(ans), `"content":"hi"`) {
		t.Errorf("recorded bodies: %q / %q", req, ans)
	}
	assertNoTokenInDB(t, e.env, tok, testRealKey)
}

func TestOIDCTokenRefusals(t *testing.T) {
	e := newOIDCEnv(t, okJSON)
	now := time.Now()
	foreign := oidctest.NewIssuer(t) // same claims, a key the proxy does not trust
	foreignKid := foreign.AddKey(t, jose.ES256)
	foreignKey, _ := foreign.Key(foreignKid)
	cases := []struct {
		name, token, reason string
	}{
		{"expired", e.token(map[string]any{"exp": now.Add(-time.Minute).Unix()}), "expired"},
		{"wrong audience", e.token(map[string]any{"aud": "https://github.com/acme"}), "wrong audience"},
		{"alg none", oidctest.Unsigned(e.iss.GitHubClaims(now)), "unsigned token"},
		{"untrusted key", oidctest.SignWith(t, jose.ES256, foreignKey.Signer, e.kid, e.iss.GitHubClaims(now)), "bad signature"},
		{"unknown issuer", foreign.Sign(t, foreignKid, foreign.GitHubClaims(now)), "unknown issuer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, e.client, chatURL, tc.token, chatBody)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401 (%s)", resp.StatusCode, body)
			}
			ae := apiErr(t, body)
			if ae.Type != errUnauthenticated || !strings.Contains(ae.Message, tc.reason) {
				t.Errorf("error = %+v, want type %s and reason %q", ae, errUnauthenticated, tc.reason)
			}
			if strings.Contains(string(body), tc.token) {
				t.Error("the token is echoed in the error")
			}
			rec := e.lastRecord()
			if rec.Kind != store.KindRefused || rec.Outcome != store.OutcomeUnauthenticated || rec.Status != 401 {
				t.Errorf("record kind %q outcome %q status %d", rec.Kind, rec.Outcome, rec.Status)
			}
			if rec.Identity.TokenHash != identity.HashToken(tc.token) || rec.Identity.Method != "" || len(rec.Identity.Claims) != 0 {
				t.Errorf("record identity = %+v", rec.Identity)
			}
			assertNoTokenInDB(t, e.env, tc.token)
		})
	}
	if n := len(e.upstreamRequests()); n != 0 {
		t.Errorf("upstream saw %d requests from refused tokens", n)
	}
}

// exchangeToken posts cred to the token endpoint.
func exchangeToken(t *testing.T, c *http.Client, method, cred string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, tokenURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(resp.Body)
}

// sessionToken exchanges oidcToken and returns the session token.
func sessionToken(t *testing.T, e *oidcEnv, oidcToken string) (string, time.Time) {
	t.Helper()
	resp, body := exchangeToken(t, e.client, http.MethodPost, oidcToken)
	if resp.StatusCode != 200 {
		t.Fatalf("token exchange: status %d body %s", resp.StatusCode, body)
	}
	var got struct {
		Token     string    `json:"token"`
		TokenType string    `json:"token_type"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("token exchange answer %q: %v", body, err)
	}
	if !strings.HasPrefix(got.Token, identity.SessionTokenPrefix) || got.TokenType != "Bearer" {
		t.Fatalf("token exchange answer: token %.8q... type %q", got.Token, got.TokenType)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("token exchange headers: %v", resp.Header)
	}
	return got.Token, got.ExpiresAt
}

func TestOIDCTokenExchange(t *testing.T) {
	e := newOIDCEnv(t, okJSON)
	oidcTok := e.token(nil)
	before := time.Now()
	session, expires := sessionToken(t, e, oidcTok)
	// The default TTL, far beyond the OIDC token's 5 minutes.
	if lo, hi := before.Add(identity.DefaultSessionTokenTTL-time.Minute), time.Now().Add(identity.DefaultSessionTokenTTL); expires.Before(lo) || expires.After(hi) {
		t.Errorf("expires_at %v, want about %v from now", expires, identity.DefaultSessionTokenTTL)
	}

	rec := e.lastRecord()
	if rec.Kind != store.KindExchange || rec.Outcome != store.OutcomeForwarded || rec.Host != TokenHost || rec.Path != tokenPath || rec.Recording != store.RecordingMetadata {
		t.Fatalf("token exchange record = %+v", rec)
	}
	if rec.Identity.TokenHash != identity.HashToken(oidcTok) || rec.Identity.Subject != wantGitHubSubject || !maps.Equal(rec.Identity.Claims, wantGitHubClaims) {
		t.Errorf("token exchange record identity = %+v", rec.Identity)
	}
	if n := len(e.upstreamRequests()); n != 0 {
		t.Fatalf("the token exchange reached the upstream (%d requests)", n)
	}

	// The session token is the bearer of a chat completion.
	resp, body := post(t, e.client, chatURL, session, chatBody)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"content":"hi"`) {
		t.Fatalf("with the session token: status %d body %q", resp.StatusCode, body)
	}
	e.checkUpstreamGot(1, testRealKey, session, oidcTok)
	rec = e.lastRecord()
	if rec.Kind != store.KindExchange || rec.Outcome != store.OutcomeForwarded || rec.Host != "api.openai.com" {
		t.Fatalf("record = %+v", rec)
	}
	id := rec.Identity
	if id.Method != identity.MethodSessionToken || id.Issuer != e.iss.URL() || id.Subject != wantGitHubSubject {
		t.Errorf("record identity = %+v", id)
	}
	if id.TokenHash != identity.HashToken(session) {
		t.Errorf("token_sha256 = %q, want the session token's SHA-256", id.TokenHash)
	}
	if !maps.Equal(id.Claims, wantGitHubClaims) {
		t.Errorf("claims = %v\nwant     %v", id.Claims, wantGitHubClaims)
	}
	assertNoTokenInDB(t, e.env, oidcTok, session, testRealKey)
}

func TestOIDCTokenExchangeRefusals(t *testing.T) {
	e := newOIDCEnv(t, okJSON)
	good := e.token(nil)
	session, _ := sessionToken(t, e, good)
	cases := []struct {
		name, method, cred string
		status             int
		code, reason       string
	}{
		{"expired", http.MethodPost, e.token(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}), 401, "invalid_oidc_token", "expired"},
		{"wrong audience", http.MethodPost, e.token(map[string]any{"aud": "other"}), 401, "invalid_oidc_token", "wrong audience"},
		{"alg none", http.MethodPost, oidctest.Unsigned(e.iss.GitHubClaims(time.Now())), 401, "invalid_oidc_token", "unsigned token"},
		{"runner token", http.MethodPost, testRunnerToken, 401, "invalid_oidc_token", "not an oidc token"},
		{"session token", http.MethodPost, session, 401, "invalid_oidc_token", "not an oidc token"},
		{"no credential", http.MethodPost, "", 401, "invalid_oidc_token", "missing credential"},
		{"GET", http.MethodGet, good, 404, "not_found", "POST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := exchangeToken(t, e.client, tc.method, tc.cred)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			ae := apiErr(t, body)
			if ae.Code != tc.code || !strings.Contains(ae.Message, tc.reason) || strings.Contains(ae.Message, identity.SessionTokenPrefix) {
				t.Errorf("error = %+v, want code %s and reason %q", ae, tc.code, tc.reason)
			}
			if tc.cred != "" && strings.Contains(string(body), tc.cred) {
				t.Error("the credential is echoed in the error")
			}
			rec := e.lastRecord()
			if rec.Kind != store.KindRefused || rec.Host != TokenHost {
				t.Errorf("record kind %q host %q", rec.Kind, rec.Host)
			}
			if tc.status == 401 && rec.Outcome != store.OutcomeUnauthenticated {
				t.Errorf("record outcome %q", rec.Outcome)
			}
		})
	}
	assertNoTokenInDB(t, e.env, good, session)
}

func TestOIDCPolicy(t *testing.T) {
	const acmeKey = "sk-acme-project-key-9876543210"
	e := newOIDCEnv(t, okJSON, func(o *Options) {
		o.Policies = []identity.Policy{
			{Name: "acme", Match: map[string]string{"repository": "acme/*"}, Key: "acme", Record: identity.RecordMetadata},
			{Name: "others", Deny: true},
		}
		o.Keys = provider.Keys{provider.OpenAI: {"": testRealKey, "acme": acmeKey}}
	})

	// An acme repository: the policy's key, metadata-only recording.
	acme := e.token(nil)
	resp, body := post(t, e.client, chatURL, acme, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("acme token: status %d body %s", resp.StatusCode, body)
	}
	e.checkUpstreamGot(1, acmeKey, acme)
	rec := e.lastRecord()
	if rec.Identity.Policy != "acme" || rec.Identity.Method != identity.MethodOIDC || rec.Recording != store.RecordingMetadata {
		t.Fatalf("record identity %+v recording %q", rec.Identity, rec.Recording)
	}
	if _, req, ans, err := e.store.Get(rec.SessionID); err != nil || len(req) != 0 || len(ans) != 0 {
		t.Errorf("metadata policy stored bodies %q / %q (%v)", req, ans, err)
	}

	// The same policy applies to the session token the acme token buys.
	session, _ := sessionToken(t, e, acme)
	resp, body = post(t, e.client, chatURL, session, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("acme session token: status %d body %s", resp.StatusCode, body)
	}
	e.checkUpstreamGot(2, acmeKey, session, acme)
	if rec := e.lastRecord(); rec.Identity.Policy != "acme" || rec.Identity.Method != identity.MethodSessionToken || rec.Recording != store.RecordingMetadata {
		t.Fatalf("record identity %+v recording %q", rec.Identity, rec.Recording)
	}

	// A valid token from another owner's repository falls to the deny
	// policy, and so does its session token; "*" does not cross "/".
	for _, repo := range []string{"evil/docs", "acme/docs/x"} {
		other := e.token(map[string]any{"repository": repo, "sub": "repo:" + repo + ":ref:refs/heads/main"})
		otherSession, _ := sessionToken(t, e, other)
		for _, cred := range []string{other, otherSession} {
			resp, body := post(t, e.client, chatURL, cred, chatBody)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("%s: status %d, want 403 (%s)", repo, resp.StatusCode, body)
			}
			if ae := apiErr(t, body); ae.Type != errForbidden || ae.Code != "policy_denied" {
				t.Errorf("%s: error %+v", repo, ae)
			}
			rec := e.lastRecord()
			if rec.Kind != store.KindRefused || rec.Outcome != store.OutcomeDenied || rec.Identity.Policy != "others" || rec.Identity.Claims["repository"] != repo {
				t.Errorf("%s: record kind %q outcome %q identity %+v", repo, rec.Kind, rec.Outcome, rec.Identity)
			}
		}
	}
	if n := len(e.upstreamRequests()); n != 2 {
		t.Errorf("upstream saw %d requests, want 2 (denied identities forwarded)", n)
	}
	assertNoTokenInDB(t, e.env, acme, session, testRealKey, acmeKey)
}
