package approval

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/testutil"
)

func TestWebhook(t *testing.T) {
	got := make(chan map[string]any, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with %q", r.Method, r.Header.Get("Content-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		if strings.Contains(string(b), "the secret plan") {
			t.Errorf("webhook body carries the prompt: %s", b)
		}
		got <- m
	}))
	defer srv.Close()

	q := NewQueue(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	wh := &Webhook{URL: srv.URL + "/hooks/T000/B000/XXXX", LinkBase: "http://127.0.0.1:9090/approvals/"}
	done := make(chan error, 1)
	go func() { done <- wh.Run(ctx, q) }()

	r := req("ci-1")
	r.ID = "abc123"
	r.Rule = "rule <prod>"
	r.Prompt = "the secret plan"
	waitSubscribed(t, q, got)
	q.Ticket(r, "body")
	held := next(t, got)
	if held["event"] != "approval.held" {
		t.Fatalf("event = %v", held["event"])
	}
	id := held["approval"].(map[string]any)["id"].(string)
	link := "http://127.0.0.1:9090/approvals/" + id
	if held["link"] != link {
		t.Fatalf("link = %v", held["link"])
	}
	text := held["text"].(string)
	if !strings.Contains(text, "runner ci-1 asks for approval of POST api.openai.com/v1/chat/completions (rule &lt;prod&gt;)") || !strings.HasSuffix(text, "<"+link+">") {
		t.Fatalf("text = %q", text)
	}

	if _, err := q.Decide(id, Denied, "alice", "not today"); err != nil {
		t.Fatal(err)
	}
	decided := next(t, got)
	if decided["event"] != "approval.decided" || decided["approval"].(map[string]any)["id"] != id {
		t.Fatalf("event = %v", decided)
	}
	d := decided["decision"].(map[string]any)
	if d["decision"] != Denied || d["by"] != "alice" || d["reason"] != "not today" {
		t.Fatalf("decision = %v", d)
	}
	if !strings.Contains(decided["text"].(string), "denied by alice: not today") {
		t.Fatalf("text = %q", decided["text"])
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitSubscribed returns once the webhook has subscribed to q, which a
// test sees when a probe ticket's event reaches the webhook's endpoint:
// it tickets probe requests until one does.
func waitSubscribed(t *testing.T, q *Queue, got <-chan map[string]any) {
	t.Helper()
	n := 0
	testutil.WaitFor(t, 0, "the webhook to post a probe's event", func() bool {
		n++
		q.Ticket(req("probe"), fmt.Sprint("probe ", n))
		select {
		case <-got:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
}

// next returns the next event the webhook posted that is not a probe's.
func next(t *testing.T, got <-chan map[string]any) map[string]any {
	t.Helper()
	timeout := time.After(testutil.DefaultWait)
	for {
		select {
		case m := <-got:
			if a, _ := m["approval"].(map[string]any); a["requester_name"] == "probe" {
				continue
			}
			return m
		case <-timeout:
			t.Fatal("the webhook posted nothing")
		}
	}
}

func TestWebhookFailures(t *testing.T) {
	if err := (&Webhook{URL: "ftp://x"}).Run(context.Background(), NewQueue(0)); err == nil {
		t.Fatal("ftp URL accepted")
	}
	// A failing endpoint is logged and skipped; the queue is unaffected.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer srv.Close()
	wh := &Webhook{URL: srv.URL + "/secret-path"}
	err := wh.post(context.Background(), srv.Client(), Event{Type: EventHeld, Request: req("ci-1")})
	if err == nil || !strings.Contains(err.Error(), "500") || strings.Contains(err.Error(), "secret-path") {
		t.Fatalf("err = %v", err)
	}
	srv.Close()
	err = wh.post(context.Background(), srv.Client(), Event{Type: EventHeld, Request: req("ci-1")})
	if err == nil || strings.Contains(err.Error(), "secret-path") {
		t.Fatalf("err = %v", err)
	}
}
