package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessctl/sessctl/budget"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/store"
)

// Streams as OpenAI sends them: chunks carry "usage": null, and a final
// usage chunk comes, only when the request sets include_usage.
const (
	chunkRole  = `{"id":"chatcmpl-u","object":"chat.completion.chunk","created":1764860000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]%s}`
	chunkText  = `{"id":"chatcmpl-u","object":"chat.completion.chunk","created":1764860000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Hello there"},"logprobs":null,"finish_reason":null}]%s}`
	chunkStop  = `{"id":"chatcmpl-u","object":"chat.completion.chunk","created":1764860000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]%s}`
	chunkUsage = `{"id":"chatcmpl-u","object":"chat.completion.chunk","created":1764860000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`
)

// chatStream returns the stream OpenAI sends, with or without usage.
func chatStream(withUsage bool) string {
	extra := ""
	if withUsage {
		extra = `,"usage":null`
	}
	var b strings.Builder
	for _, c := range []string{chunkRole, chunkText, chunkStop} {
		fmt.Fprintf(&b, "data: "+c+"\n\n", extra)
	}
	if withUsage {
		b.WriteString("data: " + chunkUsage + "\n\n")
	}
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

// usageUpstream stands in for api.openai.com with real usage fields on
// each API shape.
func usageUpstream(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Stream        bool `json:"stream"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	json.Unmarshal(body, &req)
	sse := func(s string) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, s)
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/v1/chat/completions" && req.Stream:
		sse(chatStream(req.StreamOptions != nil && req.StreamOptions.IncludeUsage))
	case r.URL.Path == "/v1/chat/completions":
		io.WriteString(w, `{"id":"chatcmpl-w","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}}`)
	case r.URL.Path == "/v1/responses" && req.Stream:
		sse("event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"usage\":null}}\n\n" +
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n" +
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":8},\"output_tokens\":87,\"output_tokens_details\":{\"reasoning_tokens\":64},\"total_tokens\":123}}}\n\n")
	case r.URL.Path == "/v1/responses":
		io.WriteString(w, `{"id":"resp_2","object":"response","status":"completed","output":[],"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":12}}`)
	case r.URL.Path == "/v1/embeddings":
		io.WriteString(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`)
	default:
		w.WriteHeader(404)
	}
}

func lastRecord(t *testing.T, e *env) *store.Record {
	t.Helper()
	recs := e.records()
	return recs[len(recs)-1]
}

func TestUsageRecordedForEachAPIShape(t *testing.T) {
	e := newEnv(t, usageUpstream)
	cases := []struct {
		name, path, body string
		want             store.Usage
		// runnerGets is the exact answer the runner must receive, if set.
		runnerGets string
		asked      bool // the upstream request asks for usage
	}{
		{"chat", "/v1/chat/completions", chatBody, store.Usage{Input: 19, Output: 10, Total: 29}, "", false},
		{"chat streamed, usage not asked", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			store.Usage{Input: 12, CachedInput: 4, Output: 3, Total: 15}, chatStream(false), true},
		{"chat streamed, usage asked", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}`,
			store.Usage{Input: 12, CachedInput: 4, Output: 3, Total: 15}, chatStream(true), true},
		{"responses streamed", "/v1/responses", `{"model":"o4-mini","stream":true,"input":"hi"}`, store.Usage{Input: 36, CachedInput: 8, Output: 87, Reasoning: 64, Total: 123}, "", false},
		{"responses", "/v1/responses", `{"model":"o4-mini","input":"hi"}`, store.Usage{Input: 5, Output: 7, Reasoning: 2, Total: 12}, "", false},
		{"embeddings", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"}`, store.Usage{Input: 8, Total: 8}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, e.client, "https://api.openai.com"+tc.path, testRunnerToken, tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if tc.runnerGets != "" && string(body) != tc.runnerGets {
				t.Fatalf("runner got\n%s\nwant exactly\n%s", body, tc.runnerGets)
			}
			seen := e.upstreamRequests()
			up, _ := io.ReadAll(seen[len(seen)-1].Body)
			if asked := bytes.Contains(up, []byte(`"include_usage":true`)); asked != tc.asked {
				t.Errorf("upstream request asks for usage: %v, want %v: %s", asked, tc.asked, up)
			}
			rec := lastRecord(t, e)
			if rec.Usage == nil || *rec.Usage != tc.want {
				t.Fatalf("recorded usage %+v, want %+v", rec.Usage, tc.want)
			}
			// The record keeps the request as the runner sent it.
			_, req, _, err := e.store.Get(rec.SessionID)
			if err != nil || string(req) != tc.body {
				t.Errorf("recorded request %s (%v)", req, err)
			}
		})
	}
	var m bytes.Buffer
	e.proxy.opt.Metrics.WritePrometheus(&m)
	for _, want := range []string{
		"# TYPE sessctl_tokens_total counter\n",
		`sessctl_tokens_total{model="gpt-4o-mini",outcome="forwarded",type="total"} 59` + "\n", // 29 + 15 + 15
		`sessctl_tokens_total{model="o4-mini",outcome="forwarded",type="reasoning"} 66` + "\n",
	} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, m.String())
		}
	}
}

func TestInterruptedStreamKeepsUsageMarked(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: "+fmt.Sprintf(chunkText, `,"usage":null`)+"\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the upstream breaks off
	})
	resp, err := e.client.Do(mustRequest(t, "https://api.openai.com/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[]}`))
	if err == nil {
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	rec := lastRecord(t, e)
	if rec.Outcome != store.OutcomeUpstreamError || rec.Usage == nil || !rec.Usage.Incomplete {
		t.Fatalf("interrupted stream record: outcome %s usage %+v", rec.Outcome, rec.Usage)
	}
}

func mustRequest(t *testing.T, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	return req
}

func TestModelAllowListCannotBeBypassed(t *testing.T) {
	e := newEnv(t, usageUpstream, func(o *Options) {
		o.Policies = []identity.Policy{{Name: "ci", Match: map[string]string{"runner": "ci-*"}, Models: []string{"gpt-4o-mini", "text-embedding-3-*"}}}
	})
	cases := []struct {
		name, url, body string
		header          http.Header
		code            string // "" for allowed
	}{
		{"allowed", "/v1/chat/completions", chatBody, nil, ""},
		{"glob", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"x"}`, nil, ""},
		{"other model", "/v1/chat/completions", `{"model":"o1-pro","messages":[]}`, nil, "model_not_allowed"},
		{"different case", "/v1/chat/completions", `{"model":"GPT-4o-mini","messages":[]}`, nil, "model_not_allowed"},
		{"whitespace", "/v1/chat/completions", `{"model":" gpt-4o-mini","messages":[]}`, nil, "model_not_allowed"},
		{"trailing whitespace", "/v1/chat/completions", `{"model":"gpt-4o-mini\n","messages":[]}`, nil, "model_not_allowed"},
		{"duplicate key", "/v1/chat/completions", `{"model":"gpt-4o-mini","model":"o1-pro","messages":[]}`, nil, "model_unreadable"},
		{"key in another case", "/v1/chat/completions", `{"Model":"o1-pro","model":"gpt-4o-mini","messages":[]}`, nil, "model_unreadable"},
		{"escaped key", "/v1/chat/completions", `{"model":"gpt-4o-mini","mod\u0065l":"o1-pro"}`, nil, "model_unreadable"},
		{"no model in body, one in the query", "/v1/chat/completions?model=gpt-4o-mini", `{"messages":[]}`, nil, "model_unreadable"},
		{"model in the query", "/v1/chat/completions?model=o1-pro", chatBody, nil, "model_unreadable"},
		{"model in a header", "/v1/chat/completions", chatBody, http.Header{"X-Model": {"o1-pro"}}, "model_unreadable"},
		{"not a string", "/v1/chat/completions", `{"model":{"name":"gpt-4o-mini"}}`, nil, "model_unreadable"},
		{"not JSON", "/v1/audio/transcriptions", "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--\r\n", nil, "model_unreadable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.upstreamRequests())
			req := mustRequest(t, "https://api.openai.com"+tc.url, tc.body)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, body := do(t, e.client, req)
			forwarded := len(e.upstreamRequests()) > before
			if tc.code == "" {
				if resp.StatusCode != 200 || !forwarded {
					t.Fatalf("allowed model refused: %d %s", resp.StatusCode, body)
				}
				return
			}
			if forwarded {
				t.Fatalf("the request reached the upstream")
			}
			ae := apiErr(t, body)
			if resp.StatusCode != 403 || ae.Code != tc.code || ae.Type != errForbidden || !strings.Contains(ae.Message, "policy ci") {
				t.Fatalf("got %d %+v", resp.StatusCode, ae)
			}
			if rec := lastRecord(t, e); rec.Outcome != store.OutcomeDenied || rec.Kind != store.KindRefused {
				t.Errorf("record %s/%s", rec.Kind, rec.Outcome)
			}
		})
	}
}

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestBudgetTripsAtTheRightRequestAndFrees(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 12, 4, 10, 0, 30, 0, time.UTC)}
	e := newEnv(t, usageUpstream, func(o *Options) {
		o.Policies = []identity.Policy{{Name: "capped", Match: map[string]string{"runner": "ci-*"},
			Budget: budget.Limits{{Tokens: 70, Per: time.Minute, By: "runner"}, {Requests: 5, Per: 24 * time.Hour, By: "runner"}}}}
		o.Budget = budget.NewMeter(budget.NewLocal(), clk.now)
	})
	send := func() (*http.Response, []byte) {
		return post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	}
	// Each answer reports 29 tokens: 0, 29 and 58 are under 70; after
	// the third, 87 are spent and the fourth is refused.
	for i := 1; i <= 3; i++ {
		if resp, body := send(); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	n := len(e.upstreamRequests())
	resp, body := send()
	ae := apiErr(t, body)
	if resp.StatusCode != 429 || ae.Type != errBudgetExceeded || ae.Code != "budget_exceeded" {
		t.Fatalf("4th request: %d %+v", resp.StatusCode, ae)
	}
	if got := resp.Header.Get("Retry-After"); got != "30" {
		t.Errorf("Retry-After = %q, want 30 (the minute frees at 10:01:00)", got)
	}
	if got := resp.Header.Get("X-Should-Retry"); got != "true" {
		t.Errorf("X-Should-Retry = %q", got)
	}
	if len(e.upstreamRequests()) != n {
		t.Fatal("the refused request reached the upstream")
	}
	if rec := lastRecord(t, e); rec.Outcome != store.OutcomeBudgetExceeded || rec.Status != 429 {
		t.Errorf("record outcome %s status %d", rec.Outcome, rec.Status)
	}
	// One second before the window ends: still refused.
	clk.set(time.Date(2026, 12, 4, 10, 0, 59, 0, time.UTC))
	if resp, _ := send(); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("at 10:00:59: %d Retry-After %s", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The minute frees: two more requests fit the day's 5, then the day's
	// request cap trips until midnight, and SDKs are told not to retry.
	clk.set(time.Date(2026, 12, 4, 10, 1, 0, 0, time.UTC))
	for i := 4; i <= 5; i++ {
		if resp, body := send(); resp.StatusCode != 200 {
			t.Fatalf("request %d after the window freed: %d %s", i, resp.StatusCode, body)
		}
	}
	clk.set(time.Date(2026, 12, 4, 10, 5, 0, 0, time.UTC))
	resp, body = send()
	if resp.StatusCode != 429 || !strings.Contains(apiErr(t, body).Message, "5 requests per 24h0m0s") {
		t.Fatalf("6th request of the day: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") != fmt.Sprint(int((13*time.Hour+55*time.Minute).Seconds())) || resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("Retry-After %s X-Should-Retry %s", resp.Header.Get("Retry-After"), resp.Header.Get("X-Should-Retry"))
	}
	// The charges went into the log with the records.
	got := map[string]store.Spent{}
	e.store.Budgets(func(k string, w time.Time, s store.Spent) error { got[k] = s; return nil })
	if s := got["capped/runner=ci-1/86400s"]; s.Requests != 5 || s.Tokens != 5*29 {
		t.Errorf("stored day counter %+v (all: %+v)", s, got)
	}
}

func TestBudgetNeverCutsAStream(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	e := newEnv(t, usageUpstream, func(o *Options) {
		o.Policies = []identity.Policy{{Name: "capped", Match: map[string]string{"runner": "ci-*"},
			Budget: budget.Limits{{Tokens: 10, Per: time.Hour, By: "runner"}}}}
		o.Budget = budget.NewMeter(budget.NewLocal(), clk.now)
	})
	// The answer's 15 tokens exceed the budget of 10: it still arrives
	// whole; the next request is refused.
	resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, `{"model":"gpt-4o-mini","stream":true,"messages":[]}`)
	if resp.StatusCode != 200 || string(body) != chatStream(false) {
		t.Fatalf("stream over budget: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody); resp.StatusCode != 429 {
		t.Fatalf("next request: %d", resp.StatusCode)
	}
}

func TestWebSocketUsageAllowListAndBudget(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		for n := 0; ; n++ {
			_, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if wsType(msg) != "response.create" {
				continue
			}
			terminal := []string{"response.completed", "response.incomplete", "response.failed"}[n%3]
			c.Write(ctx, websocket.MessageText, []byte(`{"type":"response.created","response":{"id":"r","usage":null}}`))
			c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"type":%q,"response":{"id":"r","usage":{"input_tokens":%d,"input_tokens_details":{"cached_tokens":1},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":%d}}}`, terminal, 10+n, 14+n)))
		}
	}, func(o *Options) {
		o.Policies = []identity.Policy{{Name: "ws", Match: map[string]string{"runner": "ci-*"}, Models: []string{"gpt-5*"},
			Budget: budget.Limits{{Requests: 3, Per: time.Hour, By: "runner"}}}}
		o.Budget = budget.NewMeter(budget.NewLocal(), clk.now)
	})
	c := dialWS(t, e, testRunnerToken)
	defer c.CloseNow()
	ctx := context.Background()
	send := func(s string) {
		if err := c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	for _, term := range []string{"response.completed", "response.incomplete", "response.failed"} {
		send(`{"type":"response.create","model":"gpt-5-codex","input":"hi"}`)
		readUntil(t, c, term)
	}
	// A model outside the list, even nested, is refused.
	send(`{"type":"response.create","model":"gpt-5-codex","response":{"model":"o1-pro"}}`)
	if ev := readUntil(t, c, "error"); !strings.Contains(ev[len(ev)-1], "model_unreadable") {
		t.Errorf("two models: %s", ev[len(ev)-1])
	}
	send(`{"type":"response.create","model":"o1-pro","input":"hi"}`)
	if ev := readUntil(t, c, "error"); !strings.Contains(ev[len(ev)-1], "model_not_allowed") {
		t.Errorf("other model: %s", ev[len(ev)-1])
	}
	// Three requests per hour: the fourth is over budget.
	send(`{"type":"response.create","model":"gpt-5-codex","input":"hi"}`)
	if ev := readUntil(t, c, "error"); !strings.Contains(ev[len(ev)-1], "budget_exceeded") {
		t.Errorf("over budget: %s", ev[len(ev)-1])
	}
	c.Close(websocket.StatusNormalClosure, "")
	var got []store.Usage
	for _, r := range e.records() {
		if r.Conn.Transport == "websocket" && r.Usage != nil {
			got = append(got, *r.Usage)
		}
	}
	want := []store.Usage{{Input: 10, CachedInput: 1, Output: 4, Reasoning: 2, Total: 14}, {Input: 11, CachedInput: 1, Output: 4, Reasoning: 2, Total: 15}, {Input: 12, CachedInput: 1, Output: 4, Reasoning: 2, Total: 16}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("WebSocket usage %+v, want %+v", got, want)
	}
}
