package web

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// contentSecurityPolicy forbids inline script and style and every origin
// but this one.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// uiPageSize is the number of records on a page of the sessions list.
const uiPageSize = 50

// pages holds the parsed templates, one set per page.
type pages struct {
	t map[string]*template.Template
}

var templateFuncs = template.FuncMap{
	"segments": segments,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
	},
	"duration": func(a, b time.Time) string { return b.Sub(a).Round(time.Millisecond).String() },
	"caller":   caller,
	// dash takes any string type (store.Outcome, store.Recording...).
	"dash": func(v any) string {
		s := fmt.Sprint(v)
		if s == "" {
			return "-"
		}
		return s
	},
	"claim": claimOf,
	// path names a record in a URL path: its sequence number, or
	// SEQ@ORIGIN (escaped) for a record of a fleet.
	"path": func(r *store.Record) string { return url.PathEscape(query.RecordRef(r)) },
}

// loadPages parses the embedded templates. They are part of the binary and
// covered by tests, so a parse error is a programming error.
func loadPages() *pages {
	p := &pages{t: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t := template.Must(template.New("layout.html").Funcs(templateFuncs).ParseFS(templateFS, "templates/layout.html", n))
		p.t[strings.TrimSuffix(base, ".html")] = t
	}
	return p
}

// pageData is what every page template gets.
type pageData struct {
	Title string
	Nav   string
	Admin string
	CSRF  string
	// Notice is a message shown at the top of the page.
	Notice string
	Error  string
	Data   any
}

// securityHeaders sets the headers every UI and API response carries.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func (h *handler) render(w http.ResponseWriter, status int, name string, d pageData) {
	t := h.pages.t[name]
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		h.log.Error("rendering a page", "page", name, "err", err)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// routePages adds the UI's routes to mux.
func (h *handler) routePages(mux *http.ServeMux) {
	static, _ := fs.Sub(staticFS, "static")
	fileServer := http.FileServerFS(static)
	mux.Handle("GET /static/", uiHeaders(http.StripPrefix("/static/", fileServer)))
	mux.Handle("GET /login", uiHeaders(http.HandlerFunc(h.loginPage)))
	mux.Handle("POST /login", uiHeaders(http.HandlerFunc(h.login)))
	mux.Handle("POST /logout", h.requirePage(h.logout))
	mux.Handle("GET /{$}", uiHeaders(http.RedirectHandler("/sessions", http.StatusSeeOther)))
	mux.Handle("GET /sessions", h.requirePage(h.sessionsPage))
	mux.Handle("GET /sessions/{id}", h.requirePage(h.sessionPage))
	mux.Handle("GET /sessions/{id}/replay", h.requirePage(h.replayPage))
	mux.Handle("GET /approvals", h.requirePage(h.approvalsPage))
	mux.Handle("POST /approvals/{id}/approve", h.requirePage(h.decideForm(approval.Approved)))
	mux.Handle("POST /approvals/{id}/deny", h.requirePage(h.decideForm(approval.Denied)))
}

func uiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		next.ServeHTTP(w, r)
	})
}

// requirePage sends a browser without a login to the login page, and
// refuses a state change without the login's CSRF token.
func (h *handler) requirePage(fn func(http.ResponseWriter, *http.Request, *principal)) http.Handler {
	return uiHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := h.authenticate(r)
		if err != nil {
			if r.Method != http.MethodGet {
				http.Error(w, "log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if !safeMethod(r.Method) && !checkCSRF(p, r) {
			http.Error(w, "missing or wrong CSRF token: reload the page", http.StatusForbidden)
			return
		}
		fn(w, r, p)
	}))
}

func (h *handler) data(p *principal, title, nav string, d any) pageData {
	pd := pageData{Title: title, Nav: nav, Admin: p.admin, Data: d}
	if p.login != nil {
		pd.CSRF = p.login.csrf
	}
	return pd
}

// safeNext keeps a post-login redirect on this site.
func safeNext(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") || strings.HasPrefix(s, "/login") {
		return "/sessions"
	}
	return s
}

func (h *handler) loginPage(w http.ResponseWriter, r *http.Request) {
	d := pageData{Title: "Log in", Data: safeNext(r.URL.Query().Get("next"))}
	if len(h.admins) == 0 {
		d.Error = errNoAdmins.Error()
	}
	h.render(w, http.StatusOK, "login", d)
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := safeNext(r.PostFormValue("next"))
	name := checkToken(h.admins, strings.TrimSpace(r.PostFormValue("token")))
	if name == "" {
		msg := "Unknown admin token."
		if len(h.admins) == 0 {
			msg = errNoAdmins.Error()
		}
		h.log.Info("admin login refused", "remote", r.RemoteAddr)
		h.render(w, http.StatusUnauthorized, "login", pageData{Title: "Log in", Error: msg, Data: next})
		return
	}
	id, ls, err := h.logins.create(name)
	if err != nil {
		h.log.Error("creating a login", "err", err)
		http.Error(w, "login failed", http.StatusInternalServerError)
		return
	}
	h.log.Info("admin logged in", "admin", name, "remote", r.RemoteAddr)
	setLoginCookie(w, r, id, ls.expires)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request, p *principal) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		h.logins.remove(c.Value)
	}
	clearLoginCookie(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// sessionsView is the sessions list page's data.
type sessionsView struct {
	Q        query.Query
	Form     url.Values
	Records  []*store.Record
	NextURL  string
	Outcomes []store.Outcome
	Kinds    []store.Kind
	Filtered bool
}

func (h *handler) sessionsPage(w http.ResponseWriter, r *http.Request, p *principal) {
	form := r.URL.Query()
	v := sessionsView{Form: form, Outcomes: store.Outcomes, Kinds: store.Kinds}
	if h.o.Sessions == nil {
		d := h.data(p, "Sessions", "sessions", v)
		d.Error = "No session log is attached to the admin listener."
		h.render(w, http.StatusServiceUnavailable, "sessions", d)
		return
	}
	q, err := query.ParseQuery(form, h.o.Now())
	if err != nil {
		d := h.data(p, "Sessions", "sessions", v)
		d.Error = "Filter: " + err.Error()
		h.render(w, http.StatusBadRequest, "sessions", d)
		return
	}
	if q.Limit == 0 || q.Limit > admin.MaxPageSize {
		q.Limit = uiPageSize
	}
	v.Q = q
	v.Filtered = query.HasFilter(form)
	next, err := query.Find(h.o.Sessions, q, func(rec *store.Record) error {
		v.Records = append(v.Records, rec)
		return nil
	})
	if err != nil {
		h.log.Error("listing sessions", "err", err)
		d := h.data(p, "Sessions", "sessions", v)
		d.Error = "Listing sessions failed."
		h.render(w, http.StatusInternalServerError, "sessions", d)
		return
	}
	if next != "" {
		nv := url.Values{}
		for k, vals := range form {
			if k != "after" && len(vals) > 0 && vals[0] != "" {
				nv.Set(k, vals[0])
			}
		}
		nv.Set("after", next)
		v.NextURL = "/sessions?" + nv.Encode()
	}
	h.render(w, http.StatusOK, "sessions", h.data(p, "Sessions", "sessions", v))
}

// sessionView is the session page's data.
type sessionView struct {
	D          *query.SessionDetail
	Prompt     string
	Answer     string
	AnswerText string
	Verified   string // "yes", "no" or "unknown"
	Approvals  []*store.Record
	Others     []*store.Record
}

func (h *handler) loadSession(w http.ResponseWriter, r *http.Request, p *principal) (*query.SessionDetail, bool) {
	if h.o.Sessions == nil {
		d := h.data(p, "Session", "sessions", nil)
		d.Error = "No session log is attached to the admin listener."
		h.render(w, http.StatusServiceUnavailable, "error", d)
		return nil, false
	}
	sd, err := query.Detail(h.o.Sessions, r.PathValue("id"), h.o.Verify)
	if err != nil {
		status, msg := http.StatusInternalServerError, "Reading the session failed."
		if errors.Is(err, store.ErrNotFound) {
			status, msg = http.StatusNotFound, "No such session or record."
		} else {
			h.log.Error("reading a session", "err", err)
		}
		d := h.data(p, "Session", "sessions", nil)
		d.Error = msg
		h.render(w, status, "error", d)
		return nil, false
	}
	return sd, true
}

func (h *handler) sessionPage(w http.ResponseWriter, r *http.Request, p *principal) {
	sd, ok := h.loadSession(w, r, p)
	if !ok {
		return
	}
	v := sessionView{D: sd, Verified: "unknown"}
	if sd.Prompt != nil {
		v.Prompt = prettyBody([]byte(*sd.Prompt))
	}
	if sd.Answer != nil {
		v.Answer = *sd.Answer
		v.AnswerText = answerText([]byte(*sd.Answer))
	}
	if sd.Verified != nil {
		v.Verified = "no"
		if *sd.Verified {
			v.Verified = "yes"
		}
	}
	for _, rel := range sd.Related {
		if rel.Kind == store.KindApproval || rel.Approval != nil {
			v.Approvals = append(v.Approvals, rel)
		} else {
			v.Others = append(v.Others, rel)
		}
	}
	title := fmt.Sprintf("Record %d", sd.Seq)
	h.render(w, http.StatusOK, "session", h.data(p, title, "sessions", v))
}

// replayView is the replay page's data.
type replayView struct {
	D      *query.SessionDetail
	Prompt string
	// Seq names the record for the script's API calls.
	Seq string
}

func (h *handler) replayPage(w http.ResponseWriter, r *http.Request, p *principal) {
	sd, ok := h.loadSession(w, r, p)
	if !ok {
		return
	}
	v := replayView{D: sd, Seq: query.RecordRef(sd.Record)}
	if sd.Prompt != nil {
		v.Prompt = prettyBody([]byte(*sd.Prompt))
	}
	h.render(w, http.StatusOK, "replay", h.data(p, fmt.Sprintf("Replay of record %d", sd.Seq), "sessions", v))
}

// approvalsView is the approvals inbox's data.
type approvalsView struct {
	Pending []approval.Request
	Done    *approval.Decision
}

func (h *handler) approvalsPage(w http.ResponseWriter, r *http.Request, p *principal) {
	if h.o.Approvals == nil {
		d := h.data(p, "Approvals", "approvals", approvalsView{})
		d.Error = "No approval queue is attached to the admin listener."
		h.render(w, http.StatusServiceUnavailable, "approvals", d)
		return
	}
	d := h.data(p, "Approvals", "approvals", approvalsView{Pending: h.o.Approvals.Pending()})
	switch r.URL.Query().Get("done") {
	case approval.Approved:
		d.Notice = "Approved."
	case approval.Denied:
		d.Notice = "Denied."
	}
	h.render(w, http.StatusOK, "approvals", d)
}

// decideForm handles the inbox's approve and deny forms (the script posts
// to the API instead; these serve browsers without it).
func (h *handler) decideForm(decision string) func(http.ResponseWriter, *http.Request, *principal) {
	return func(w http.ResponseWriter, r *http.Request, p *principal) {
		if h.o.Approvals == nil {
			http.Error(w, "no approval queue", http.StatusServiceUnavailable)
			return
		}
		reason := r.PostFormValue("reason")
		_, status, err := h.decide(withPrincipal(r.Context(), p), r.PathValue("id"), decision, reason)
		if err != nil {
			d := h.data(p, "Approvals", "approvals", approvalsView{Pending: h.o.Approvals.Pending()})
			d.Error = err.Error()
			h.render(w, status, "approvals", d)
			return
		}
		http.Redirect(w, r, "/approvals?done="+decision, http.StatusSeeOther)
	}
}
