package web

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
)

// browser is an HTTP client with a cookie jar that does not follow
// redirects, like a browser as far as the server can tell.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, srv *httptest.Server) *browser {
	jar, _ := cookiejar.New(nil)
	c := new(http.Client)
	*c = *srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, base: srv.URL, c: c}
}

func (b *browser) req(method, path string, body string, hdr ...string) *http.Response {
	b.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.base+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if method == "POST" && !strings.HasPrefix(body, "{") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// login posts the token and picks the CSRF token from the next page.
func (b *browser) login(token string) *http.Response {
	b.t.Helper()
	resp := b.req("POST", "/login", url.Values{"token": {token}, "next": {"/sessions"}}.Encode())
	if resp.StatusCode == http.StatusSeeOther {
		page := readBody(b.t, b.req("GET", "/sessions", ""))
		m := csrfMeta.FindStringSubmatch(page)
		if m == nil {
			b.t.Fatal("no CSRF token on the page after login")
		}
		b.csrf = m[1]
	}
	return resp
}

func TestLoginSetsSafeCookie(t *testing.T) {
	s := newTestServer(t)
	b := newBrowser(t, s.Server)
	resp := b.login("wrong-token")
	if resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if body := readBody(t, resp); !strings.Contains(body, "Unknown admin token") {
		t.Errorf("wrong token page: %s", body)
	}
	resp = b.login(aliceToken)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/sessions" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies %v", cs)
	}
	c := cs[0]
	if c.Name != sessionCookie || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" {
		t.Errorf("cookie %+v", c)
	}
	if strings.Contains(c.Value, aliceToken) || len(c.Value) < 40 {
		t.Errorf("cookie value %q", c.Value)
	}
	if strings.Contains(resp.Header.Get("Location"), aliceToken) {
		t.Error("token in the redirect")
	}
	// The cookie authenticates API reads.
	if resp := b.req("GET", "/api/v1/sessions?limit=1", ""); resp.StatusCode != 200 {
		t.Errorf("API with cookie: %d", resp.StatusCode)
	}
}

func TestLoginTokenOnlyFromTheForm(t *testing.T) {
	s := newTestServer(t)
	b := newBrowser(t, s.Server)
	resp := b.req("POST", "/login?token="+url.QueryEscape(aliceToken), "next=/sessions")
	if resp.StatusCode != 401 {
		t.Errorf("token in the query string: %d", resp.StatusCode)
	}
	if resp := b.req("GET", "/api/v1/sessions?token="+url.QueryEscape(aliceToken), ""); resp.StatusCode != 401 {
		t.Errorf("API token in the query string: %d", resp.StatusCode)
	}
}

func TestSecureCookieOverTLS(t *testing.T) {
	l := newTestLog(t, time.Millisecond)
	srv := httptest.NewTLSServer(NewHandler(Options{Logger: quietLogger(), Sessions: l.st, AdminTokens: testAdmins}))
	defer srv.Close()
	b := newBrowser(t, srv)
	resp := b.login(aliceToken)
	if cs := resp.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("cookies over TLS: %+v", cs)
	}
}

func TestCookieNeedsCSRFToken(t *testing.T) {
	s := newTestServer(t)
	b := newBrowser(t, s.Server)
	b.login(aliceToken)
	held := s.hold(t, approval.Request{ID: "r1", Requester: "runner ci-1", RequesterName: "ci-1"})

	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"no token", nil},
		{"wrong token", []string{csrfHeader, "x" + b.csrf}},
		{"empty token", []string{csrfHeader, ""}},
	} {
		if resp := b.req("POST", "/api/v1/approvals/r1/approve", `{"reason":"x"}`, tc.hdr...); resp.StatusCode != 403 {
			t.Errorf("API, %s: %d", tc.name, resp.StatusCode)
		}
		if resp := b.req("POST", "/approvals/r1/approve", "reason=x"); resp.StatusCode != 403 {
			t.Errorf("form, %s: %d", tc.name, resp.StatusCode)
		}
	}
	if resp := b.req("POST", "/approvals/r1/approve", url.Values{"csrf": {"nope"}}.Encode()); resp.StatusCode != 403 {
		t.Errorf("form with a wrong token: %d", resp.StatusCode)
	}
	// Another login's CSRF token does not work either.
	other := newBrowser(t, s.Server)
	other.login(bobToken)
	if resp := b.req("POST", "/api/v1/approvals/r1/approve", `{}`, csrfHeader, other.csrf); resp.StatusCode != 403 {
		t.Errorf("another login's token: %d", resp.StatusCode)
	}
	select {
	case d := <-held:
		t.Fatalf("decided without a CSRF token: %+v", d)
	default:
	}
	resp := b.req("POST", "/api/v1/approvals/r1/approve", `{"reason":"fine"}`, csrfHeader, b.csrf)
	if resp.StatusCode != 200 {
		t.Fatalf("with the CSRF token: %d %s", resp.StatusCode, readBody(t, resp))
	}
	if d := <-held; d.By != "alice" {
		t.Errorf("decision %+v", d)
	}
	// The form route takes the token as a field.
	held = s.hold(t, approval.Request{ID: "r2", Requester: "runner ci-1"})
	resp = b.req("POST", "/approvals/r2/deny", url.Values{"csrf": {b.csrf}, "reason": {"not now"}}.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("form deny: %d", resp.StatusCode)
	}
	if d := <-held; d.Decision != approval.Denied || d.Reason != "not now" {
		t.Errorf("decision %+v", d)
	}
}

func TestCrossOriginRequestsRefused(t *testing.T) {
	s := newTestServer(t)
	b := newBrowser(t, s.Server)
	b.login(aliceToken)
	held := s.hold(t, approval.Request{ID: "r1", Requester: "runner ci-1"})
	for _, hdr := range [][]string{
		{"Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "null"},
	} {
		h := append([]string{csrfHeader, b.csrf}, hdr...)
		if resp := b.req("POST", "/api/v1/approvals/r1/approve", `{}`, h...); resp.StatusCode != 403 {
			t.Errorf("API with %v: %d", hdr, resp.StatusCode)
		}
		if resp := b.req("POST", "/approvals/r1/approve", url.Values{"csrf": {b.csrf}}.Encode(), hdr...); resp.StatusCode != 403 {
			t.Errorf("form with %v: %d", hdr, resp.StatusCode)
		}
		// Login CSRF: a foreign page cannot log the browser in.
		fresh := newBrowser(t, s.Server)
		if resp := fresh.req("POST", "/login", url.Values{"token": {aliceToken}}.Encode(), hdr...); resp.StatusCode != 403 || len(resp.Cookies()) != 0 {
			t.Errorf("login with %v: %d", hdr, resp.StatusCode)
		}
	}
	// Same-origin requests pass.
	origin := strings.TrimSuffix(s.URL, "/")
	if resp := b.req("POST", "/api/v1/approvals/r1/approve", `{}`, csrfHeader, b.csrf, "Origin", origin, "Sec-Fetch-Site", "same-origin"); resp.StatusCode != 200 {
		t.Errorf("same origin: %d", resp.StatusCode)
	}
	<-held
}

func TestLoginExpiresAndLogout(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := newTestServer(t, func(o *Options) { o.Now = clock; o.SessionTTL = time.Hour })
	b := newBrowser(t, s.Server)
	b.login(aliceToken)
	if resp := b.req("GET", "/sessions", ""); resp.StatusCode != 200 {
		t.Fatalf("logged in: %d", resp.StatusCode)
	}
	mu.Lock()
	now = now.Add(61 * time.Minute)
	mu.Unlock()
	resp := b.req("GET", "/sessions", "")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("expired login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := b.req("GET", "/api/v1/sessions", ""); resp.StatusCode != 401 {
		t.Errorf("API with an expired login: %d", resp.StatusCode)
	}

	b.login(aliceToken)
	if resp := b.req("POST", "/logout", ""); resp.StatusCode != 403 {
		t.Errorf("logout without CSRF: %d", resp.StatusCode)
	}
	if resp := b.req("POST", "/logout", url.Values{"csrf": {b.csrf}}.Encode()); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	if resp := b.req("GET", "/api/v1/sessions", ""); resp.StatusCode != 401 {
		t.Errorf("API after logout: %d", resp.StatusCode)
	}
}

func TestLoginSessionTableBounded(t *testing.T) {
	ss := newSessions(time.Hour, time.Now)
	first, _, err := ss.create("alice")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxLoginSessions+10; i++ {
		if _, _, err := ss.create("alice"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(ss.m); n > maxLoginSessions {
		t.Errorf("%d logins kept", n)
	}
	if ss.get(first) != nil {
		t.Error("the oldest login survived")
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "/sessions",
		"/sessions/4":          "/sessions/4",
		"/approvals":           "/approvals",
		"//evil.example/x":     "/sessions",
		"/\\evil.example":      "/sessions",
		"https://evil.example": "/sessions",
		"/login?next=/x":       "/sessions",
		"javascript:alert(1)":  "/sessions",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckTokenConstantTimeShape(t *testing.T) {
	admins, err := compileAdminTokens(testAdmins)
	if err != nil {
		t.Fatal(err)
	}
	for tok, want := range map[string]string{aliceToken: "alice", bobToken: "bob", "": "", aliceToken + " ": "", "x": ""} {
		if got := checkToken(admins, tok); got != want {
			t.Errorf("checkToken(%q) = %q, want %q", tok, got, want)
		}
	}
	for _, bad := range []identity.Runner{
		{Token: "s3cr3t-value"},
		{Name: "n"},
		{Name: "n", Token: "s3cr3t-value", TokenSHA256: identity.HashToken("s3cr3t-value")},
		{Name: "n", TokenSHA256: "abcd"},
		{Name: "n", TokenSHA256: strings.Repeat("zz", 32)},
	} {
		if _, err := compileAdminTokens([]identity.Runner{bad}); err == nil {
			t.Errorf("compileAdminTokens accepted %+v", bad)
		} else if bad.Token != "" && strings.Contains(err.Error(), bad.Token) {
			t.Errorf("error %q shows the token", err)
		}
	}
}
