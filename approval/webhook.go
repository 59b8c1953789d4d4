package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// webhookTimeout bounds one notification.
const webhookTimeout = 10 * time.Second

// Webhook notifies a URL (the approval_webhook setting) of queue events, so
// that a chat tool can tell approvers a request is waiting. Each event is
// POSTed as JSON:
//
//	{"event": "approval.held" | "approval.decided",
//	 "text": "one line for humans, Slack-escaped, with the link",
//	 "link": "LinkBase + id",
//	 "approval": {"id", "session_id", "requester", "requester_name", "host",
//	              "method", "path", "model", "rule", "created", "expires"},
//	 "decision": {"id", "decision", "by", "reason", "at"}}   // decided only
//
// The prompt preview is never sent: it stays behind the admin
// authentication. Notifications are best effort: a failure is logged, not
// retried, and never delays the queue.
type Webhook struct {
	// URL receives the POSTs (http or https).
	URL string
	// LinkBase, when set, is prefixed to the approval id to link to the
	// approval page (e.g. "http://127.0.0.1:9090/approvals/").
	LinkBase string
	// Client sends the POSTs; nil means a client with a 10 s timeout that
	// ignores HTTPS_PROXY.
	Client *http.Client
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
}

// webhookBody is the JSON posted for one event.
type webhookBody struct {
	Event string `json:"event"`
	Text  string `json:"text"`
	Link  string `json:"link,omitempty"`
	// Approval is the request without its prompt (Prompt is emptied and
	// omitted), which may hold what a webhook receiver must not see.
	Approval Request   `json:"approval"`
	Decision *Decision `json:"decision,omitempty"`
}

// Run posts q's events to w.URL until ctx is done, then returns nil. It
// returns an error at once if w.URL is not an http(s) URL.
func (w *Webhook) Run(ctx context.Context, q *Queue) error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("approval: webhook URL %q is not an http(s) URL", redactURL(w.URL))
	}
	client := w.Client
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		client = &http.Client{Transport: t, Timeout: webhookTimeout}
	}
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for {
		for ev := range q.Subscribe(ctx) {
			if err := w.post(ctx, client, ev); err != nil {
				log.WarnContext(ctx, "approval webhook failed", "approval", ev.Request.ID, "event", ev.Type, "err", err)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		log.WarnContext(ctx, "approval webhook fell behind; some events were not sent")
	}
}

// post sends one event.
func (w *Webhook) post(ctx context.Context, client *http.Client, ev Event) error {
	body, err := json.Marshal(w.body(ev))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sessctl-approval-webhook")
	resp, err := client.Do(req)
	if err != nil {
		// The URL may carry a secret (Slack hook paths do): drop it.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return fmt.Errorf("post to %s: %w", redactURL(w.URL), err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post to %s: %s", redactURL(w.URL), resp.Status)
	}
	return nil
}

// body builds the JSON body for ev.
func (w *Webhook) body(ev Event) webhookBody {
	r := ev.Request
	r.Prompt = ""
	b := webhookBody{Event: "approval." + ev.Type, Approval: r, Decision: ev.Decision}
	if w.LinkBase != "" {
		b.Link = w.LinkBase + url.PathEscape(r.ID)
	}
	what := fmt.Sprintf("%s %s%s", r.Method, r.Host, r.Path)
	if r.Rule != "" {
		what += " (" + r.Rule + ")"
	}
	switch {
	case ev.Type == EventHeld:
		b.Text = fmt.Sprintf("sessctl: %s asks for approval of %s, id %s, before %s", r.Requester, what, r.ID, r.Expires.UTC().Format(time.RFC3339))
	case ev.Decision != nil:
		b.Text = fmt.Sprintf("sessctl: approval %s for %s: %s", r.ID, r.Requester, ev.Decision.Decision)
		if ev.Decision.By != "" {
			b.Text += " by " + ev.Decision.By
		}
		if ev.Decision.Reason != "" {
			b.Text += ": " + ev.Decision.Reason
		}
	}
	b.Text = slackEscape(b.Text)
	if b.Link != "" {
		b.Text += " <" + b.Link + ">"
	}
	return b
}

// slackEscape escapes the characters Slack-style markup gives meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// redactURL keeps only the scheme and host of a URL for messages: webhook
// URLs often embed a secret in their path or query.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
