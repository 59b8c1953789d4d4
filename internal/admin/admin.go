// Package admin is the client side of a running sessctl's admin API
// (the CLI's --admin mode) and the API's wire types, which the handler in
// package web encodes and this client decodes.
package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

// Client calls a running sessctl's admin API; the CLI's --admin mode uses
// it. It never sends the token anywhere but the configured base URL, and
// never through a proxy from the environment (a CI runner's HTTPS_PROXY
// may well be sessctl itself).
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
	// pageSize is the number of records asked for per page.
	pageSize int
}

// StatusError is an API error response.
type StatusError struct {
	Status  int
	Message string
}

// Error names the status and the server's message.
func (e *StatusError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// NewClient returns a client for the admin API at baseURL (such as
// http://127.0.0.1:9090) authenticating with an admin token. hc may be nil.
func NewClient(baseURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q: want http(s)://host:port", baseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("admin URL %q: no credentials, query or fragment allowed", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, errors.New("admin token missing (--token, --token-file or SESSCTL_ADMIN_TOKEN)")
	}
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ForceAttemptHTTP2:     true,
		}}
	}
	return &Client{base: u, token: token, hc: hc, pageSize: MaxPageSize}, nil
}

// SetPageSize sets how many records [Client.Sessions] asks for per
// request: n between 1 and MaxPageSize (the default); other values are
// ignored.
func (c *Client) SetPageSize(n int) {
	if n >= 1 && n <= MaxPageSize {
		c.pageSize = n
	}
}

// Insecure reports whether the token would cross the network unencrypted:
// plain HTTP to a host that is not loopback.
func (c *Client) Insecure() bool {
	if c.base.Scheme == "https" {
		return false
	}
	host := c.base.Hostname()
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	// path is escaped (an id may hold a "/", as SEQ@ORIGIN does).
	u := *c.base
	escaped := u.EscapedPath() + path
	unescaped, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, fmt.Errorf("admin API: path %q: %w", path, err)
	}
	u.Path, u.RawPath = unescaped, escaped
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The error names the URL, never the token (it is in a header).
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e APIError
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, &StatusError{Status: resp.StatusCode, Message: msg}
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("admin API: decoding %s: %w", path, err)
	}
	return nil
}

// Sessions calls fn for each record matching q, newest first, paging
// through the API; q.Limit 0 means all.
func (c *Client) Sessions(ctx context.Context, q query.Query, fn func(*store.Record) error) error {
	want := q.Limit
	n := 0
	for {
		page := q
		page.Limit = c.pageSize
		if want > 0 {
			page.Limit = min(want-n, c.pageSize)
		}
		var l SessionList
		if err := c.getJSON(ctx, "/api/v1/sessions", page.Values(), &l); err != nil {
			return err
		}
		for _, r := range l.Sessions {
			if err := fn(r); err != nil {
				return err
			}
			n++
		}
		if l.Next == "" || (want > 0 && n >= want) || len(l.Sessions) == 0 {
			return nil
		}
		q.After = l.Next
	}
}

// Session returns one record with its bodies.
func (c *Client) Session(ctx context.Context, id string) (*query.SessionDetail, error) {
	var d query.SessionDetail
	if err := c.getJSON(ctx, "/api/v1/sessions/"+url.PathEscape(id), nil, &d); err != nil {
		return nil, err
	}
	if d.Record == nil {
		return nil, errors.New("admin API: empty session answer")
	}
	return &d, nil
}

// Export copies the server's JSONL export to w, line by line, and returns
// the number of records. An error the server reports after it started
// streaming is returned as an error, not written to w.
func (c *Client) Export(ctx context.Context, w io.Writer, o store.ExportOptions) (int, error) {
	q := url.Values{}
	if o.From > 0 {
		q.Set("from", strconv.FormatUint(o.From, 10))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Bodies {
		q.Set("bodies", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/export", q, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	n := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte(`{"error":`)) {
				var e APIError
				json.Unmarshal(line, &e)
				return n, fmt.Errorf("admin API: export failed after %d records: %s", n, e.Error)
			}
			if line[len(line)-1] != '\n' {
				return n, fmt.Errorf("admin API: export cut off after %d records", n)
			}
			if _, werr := w.Write(line); werr != nil {
				return n, werr
			}
			n++
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("admin API: export: %w", err)
		}
	}
}

// Snapshot copies a consistent snapshot of the running log (a bbolt file,
// streamed by store.Store.WriteSnapshot) to w.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/snapshot", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("admin API: snapshot: %w", err)
	}
	return nil
}

// Approvals returns the pending approval requests.
func (c *Client) Approvals(ctx context.Context) ([]approval.Request, error) {
	var l ApprovalList
	if err := c.getJSON(ctx, "/api/v1/approvals", nil, &l); err != nil {
		return nil, err
	}
	return l.Approvals, nil
}

// Approval returns one pending approval request.
func (c *Client) Approval(ctx context.Context, id string) (*approval.Request, error) {
	var r approval.Request
	if err := c.getJSON(ctx, "/api/v1/approvals/"+url.PathEscape(id), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Decide approves (approval.Approved) or denies (approval.Denied) a held
// request; the approver is the token's admin name.
func (c *Client) Decide(ctx context.Context, id, decision, reason string) (*approval.Decision, error) {
	verb := map[string]string{approval.Approved: "approve", approval.Denied: "deny"}[decision]
	if verb == "" {
		return nil, fmt.Errorf("decision %q: want %q or %q", decision, approval.Approved, approval.Denied)
	}
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/approvals/"+url.PathEscape(id)+"/"+verb, nil, DecisionRequest{Reason: reason})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var d approval.Decision
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, fmt.Errorf("admin API: decoding the decision: %w", err)
	}
	return &d, nil
}

// MaxPageSize bounds the records one API listing returns; clients page on
// with the returned cursor.
const MaxPageSize = 1000

// APIError is the body of every API error response.
type APIError struct {
	Error string `json:"error"`
}

// SessionList is the body of GET /api/v1/sessions.
type SessionList struct {
	Sessions []*store.Record `json:"sessions"`
	// Next is the cursor for the following page (the after parameter),
	// empty on the last page.
	Next string `json:"next,omitempty"`
}

// ApprovalList is the body of GET /api/v1/approvals.
type ApprovalList struct {
	Approvals []approval.Request `json:"approvals"`
}

// DecisionRequest is the body of POST /api/v1/approvals/{id}/approve|deny.
type DecisionRequest struct {
	Reason string `json:"reason"`
}
