package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sessctl/sessctl/identity"
)

// Cookie and header names.
const (
	sessionCookie = "sessctl_session"
	csrfHeader    = "X-CSRF-Token"
	csrfField     = "csrf"
)

// DefaultSessionTTL is how long a UI login lasts when Options.SessionTTL is
// zero.
const DefaultSessionTTL = 8 * time.Hour

// maxLoginSessions bounds the server-side session table; the oldest
// sessions are dropped first.
const maxLoginSessions = 1024

// adminToken is a compiled admin token: only its hash is kept.
type adminToken struct {
	name string
	hash [sha256.Size]byte
}

// compileAdminTokens keeps the names and hashes of the configured tokens.
func compileAdminTokens(ts []identity.Runner) ([]adminToken, error) {
	out := make([]adminToken, 0, len(ts))
	for i, t := range ts {
		if t.Name == "" {
			return nil, fmt.Errorf("web: admin token #%d: missing name", i+1)
		}
		h, err := t.Hash()
		if err != nil {
			return nil, fmt.Errorf("web: admin token %w", err)
		}
		a := adminToken{name: t.Name, hash: h}
		out = append(out, a)
	}
	return out, nil
}

// checkToken returns the name of the admin whose token is tok, or "". It
// compares the token's hash with every configured hash in constant time.
func checkToken(tokens []adminToken, tok string) string {
	if tok == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(tok))
	name := ""
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(sum[:], t.hash[:]) == 1 {
			name = t.name
		}
	}
	return name
}

// loginSession is a browser login, kept server side.
type loginSession struct {
	admin   string
	csrf    string
	expires time.Time
}

// sessions is the server-side table of browser logins.
type sessions struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]*loginSession
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, m: make(map[string]*loginSession)}
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("web: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// create starts a login for admin and returns its id.
func (s *sessions) create(admin string) (id string, ls *loginSession, err error) {
	id, err = randomToken()
	if err != nil {
		return "", nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	ls = &loginSession{admin: admin, csrf: csrf, expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	for len(s.m) >= maxLoginSessions {
		var oldest string
		for k, v := range s.m {
			if oldest == "" || v.expires.Before(s.m[oldest].expires) {
				oldest = k
			}
		}
		delete(s.m, oldest)
	}
	s.m[id] = ls
	return id, ls, nil
}

// get returns the live login with this id, or nil.
func (s *sessions) get(id string) *loginSession {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.m[id]
	if ls == nil {
		return nil
	}
	if s.now().After(ls.expires) {
		delete(s.m, id)
		return nil
	}
	return ls
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// principal is who made an authenticated request.
type principal struct {
	admin string
	// login is set when the request came with a session cookie (a
	// browser), nil for a bearer token.
	login *loginSession
}

var (
	errNoCredential  = errors.New("missing credential: send Authorization: Bearer <admin token>, or log in")
	errBadCredential = errors.New("unknown admin token or expired login")
	errNoAdmins      = errors.New("no admin_tokens are configured: the admin API and UI are disabled")
)

// authenticate finds the admin behind r: a bearer token, else a session
// cookie.
func (h *handler) authenticate(r *http.Request) (*principal, error) {
	if len(h.admins) == 0 {
		return nil, errNoAdmins
	}
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, tok, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, errBadCredential
		}
		if name := checkToken(h.admins, strings.TrimSpace(tok)); name != "" {
			return &principal{admin: name}, nil
		}
		return nil, errBadCredential
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errNoCredential
	}
	ls := h.logins.get(c.Value)
	if ls == nil {
		return nil, errBadCredential
	}
	return &principal{admin: ls.admin, login: ls}, nil
}

// checkCSRF refuses a state-changing request made with a login cookie that
// does not carry the login's CSRF token (header or form field). Requests
// with a bearer token carry no ambient credential and need none.
func checkCSRF(p *principal, r *http.Request) bool {
	if p.login == nil {
		return true
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(p.login.csrf)) == 1
}

// setLoginCookie sends the session cookie for a new login.
func setLoginCookie(w http.ResponseWriter, r *http.Request, id string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    id,
		Path:     "/",
		Expires:  expires,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

func clearLoginCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}
