package web

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/query"
)

// apiUsage serves GET /api/v1/usage?by=repo,model&since=7d: usage totals
// grouped by the dimensions asked for.
func (h *handler) apiUsage(w http.ResponseWriter, r *http.Request) {
	if !h.needSessions(w) {
		return
	}
	q, err := query.ParseUsageQuery(r.URL.Query(), h.o.Now())
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	rows, err := query.Usage(h.o.Sessions, q)
	if err != nil {
		h.log.Error("totalling usage", "err", err)
		apiError(w, http.StatusInternalServerError, "totalling usage failed")
		return
	}
	writeJSON(w, http.StatusOK, admin.UsageList{Usage: rows})
}

// usageRange reads the since/until of the Usage page and report: the last
// 7 days by default.
func (h *handler) usageRange(r *http.Request) (since, until time.Time, err error) {
	now := h.o.Now().UTC()
	s := r.URL.Query().Get("since")
	if s == "" {
		s = "7d"
	}
	if since, err = query.ParseTime(s, now); err != nil {
		return
	}
	if until, err = query.ParseTime(r.URL.Query().Get("until"), now); err != nil {
		return
	}
	if until.IsZero() {
		until = now
	}
	return since, until, nil
}

// apiUsageReport serves GET /api/v1/usage/report?since=7d: the Usage
// page's charts as data.
func (h *handler) apiUsageReport(w http.ResponseWriter, r *http.Request) {
	if !h.needSessions(w) {
		return
	}
	since, until, err := h.usageRange(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	rep, err := query.Report(h.o.Sessions, since, until)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// usagePageData is what the Usage page template gets.
type usagePageData struct {
	Since  string
	Report *query.UsageReport
	// JSON is the report for the charts script, in a data attribute.
	JSON string
}

// usagePage renders the Usage page: tables server-side (readable without
// JavaScript), charts drawn by static/usage.js from the same report.
func (h *handler) usagePage(w http.ResponseWriter, r *http.Request, p *principal) {
	if h.o.Sessions == nil {
		h.render(w, http.StatusServiceUnavailable, "error", h.data(p, "Usage", "usage", nil).withError("no session log is attached"))
		return
	}
	since, until, err := h.usageRange(r)
	d := usagePageData{Since: r.URL.Query().Get("since")}
	if d.Since == "" {
		d.Since = "7d"
	}
	if err == nil {
		d.Report, err = query.Report(h.o.Sessions, since, until)
	}
	if err != nil {
		h.render(w, http.StatusBadRequest, "usage", h.data(p, "Usage", "usage", d).withError(err.Error()))
		return
	}
	b, _ := json.Marshal(d.Report)
	d.JSON = string(b)
	h.render(w, http.StatusOK, "usage", h.data(p, "Usage", "usage", d))
}

// withError returns d showing msg as the page's error.
func (d pageData) withError(msg string) pageData {
	d.Error = msg
	return d
}
