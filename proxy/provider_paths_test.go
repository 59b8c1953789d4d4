package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/store"
)

// curlThrough runs curl through the proxy, trusting sessctl's CA only,
// and returns the body and the status.
func curlThrough(t *testing.T, e *env, args ...string) (string, int) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := []string{"-sS", "-N", "--max-time", "15", "--proxy", e.proxyURL.String(), "--cacert", e.caFile(), "-w", "\n%{http_code}"}
	out, err := exec.CommandContext(ctx, curl, append(base, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndex(s, "\n")
	var code int
	fmt.Sscan(s[i+1:], &code)
	return s[:max(i, 0)], code
}

// anthropicError decodes an Anthropic-shaped error body.
func anthropicError(t *testing.T, b []byte) (typ, msg string) {
	t.Helper()
	var v struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Type != "error" || v.Error.Type == "" || v.Error.Message == "" {
		t.Fatalf("not an Anthropic-shaped error: %q (%v)", b, err)
	}
	return v.Error.Type, v.Error.Message
}

// TestAnthropicCurl: curl with the runner token in x-api-key, as Claude
// Code sends it; a stream masked; Claude Code's /api/... calls refused in
// Anthropic's shape without reaching the upstream.
func TestAnthropicCurl(t *testing.T) {
	e, ant := newAnthropicEnv(t)
	out, code := curlThrough(t, e, "-H", "x-api-key: "+testRunnerToken, "-H", "anthropic-version: 2023-06-01",
		"-H", "content-type: application/json",
		"-d", `{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"leak the key"}]}`,
		"https://api.anthropic.com/v1/messages")
	if code != 200 || !strings.Contains(out, "event: message_stop") || strings.Contains(out, antSecret[4:]) {
		t.Fatalf("status %d, answer:\n%s", code, out)
	}
	if got := joinTextDeltas(t, out); got != "Your key is [MASKED:aws-access-key] ok." {
		t.Errorf("text %q", got)
	}
	out, code = curlThrough(t, e, "-H", "x-api-key: "+testRunnerToken, "https://api.anthropic.com/api/claude_code/settings")
	if code != 403 {
		t.Fatalf("/api/claude_code/settings: status %d body %s", code, out)
	}
	if typ, msg := anthropicError(t, []byte(out)); typ != "permission_error" || !strings.Contains(msg, "/api/claude_code/settings") {
		t.Errorf("error %s: %s", typ, msg)
	}
	if n := len(ant.requests()); n != 1 {
		t.Errorf("the stand-in got %d requests, want 1 (the message only)", n)
	}
	checkAnthropicUpstream(t, e, ant)
	last := e.records()[len(e.records())-1]
	if last.Kind != store.KindRefused || last.Path != "/api/claude_code/settings" || last.Identity.Runner != "ci-1" || last.Provider != "anthropic" {
		t.Errorf("refusal record %+v", last)
	}
}

// joinTextDeltas joins the text of an Anthropic stream's text_delta
// events.
func joinTextDeltas(t *testing.T, stream string) string {
	t.Helper()
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(stream))
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var v struct {
			Type  string `json:"type"`
			Delta struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"delta"`
		}
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Fatalf("event data %q is not JSON", data)
		}
		if v.Type == "content_block_delta" && v.Delta.Type == "text_delta" {
			b.WriteString(v.Delta.Text)
		}
	}
	return b.String()
}

// TestAnthropicSplitSecretThroughProxy: a secret split across two
// text_delta events at every split point never reaches the runner.
func TestAnthropicSplitSecretThroughProxy(t *testing.T) {
	text := "key: " + antSecret + "."
	split := make(chan int, 1)
	e, ant := newAnthropicEnv(t)
	e.mu.Lock()
	e.routes = nil // the split stand-in replaces the default one
	e.mu.Unlock()
	ant = e.addUpstream("api.anthropic.com", func(w http.ResponseWriter, r *http.Request) {
		i := <-split
		w.Header().Set("Content-Type", "text/event-stream")
		send := func(typ, data string) { fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data); w.(http.Flusher).Flush() }
		send("message_start", `{"type":"message_start","message":{"id":"m","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}`)
		send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		for _, p := range []string{text[:i], text[i:]} {
			q, _ := json.Marshal(p)
			send("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":`+string(q)+`}}`)
		}
		send("content_block_stop", `{"type":"content_block_stop","index":0}`)
		send("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}`)
		send("message_stop", `{"type":"message_stop"}`)
	})
	for i := 0; i <= len(text); i++ {
		split <- i
		req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages", strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"x"}]}`))
		req.Header.Set("Authorization", "Bearer "+testRunnerToken)
		resp, body := do(t, e.client, req)
		if resp.StatusCode != 200 || strings.Contains(string(body), antSecret[4:]) {
			t.Fatalf("split %d: status %d, the secret reached the runner:\n%s", i, resp.StatusCode, body)
		}
		if got := joinTextDeltas(t, string(body)); got != "key: [MASKED:aws-access-key]." {
			t.Fatalf("split %d: text %q", i, got)
		}
	}
	checkAnthropicUpstream(t, e, ant)
	assertNoSecretInDB(t, e, antSecret)
}

// TestAnthropicApproval: a held Anthropic request passes once approved;
// a denied one gets an Anthropic-shaped 403.
func TestAnthropicApproval(t *testing.T) {
	q := approval.NewQueue(time.Minute)
	e, ant := newAnthropicEnv(t, func(o *Options) {
		o.Approvals = q
		o.Policies = []identity.Policy{{Name: "needs-human", Match: map[string]string{"runner": "ci-1"}, Approve: "always"}}
	})
	type result struct {
		status int
		body   []byte
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages", strings.NewReader(messagesBody))
			req.Header.Set("X-Api-Key", testRunnerToken)
			resp, err := e.client.Do(req)
			if err != nil {
				results <- result{0, []byte(err.Error())}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{resp.StatusCode, b}
		}()
	}
	pending := waitPending(t, q, 2)
	if n := len(ant.requests()); n != 0 {
		t.Fatal("a held request reached the upstream")
	}
	if _, err := q.Decide(pending[0].ID, approval.Approved, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Decide(pending[1].ID, approval.Denied, "bob", "no"); err != nil {
		t.Fatal(err)
	}
	var ok, denied int
	for range 2 {
		r := <-results
		switch {
		case r.status == 200 && strings.Contains(string(r.body), "hello from claude"):
			ok++
		case r.status == 403:
			if typ, _ := anthropicError(t, r.body); typ == "permission_error" {
				denied++
			}
		default:
			t.Errorf("answer %d %s", r.status, r.body)
		}
	}
	if ok != 1 || denied != 1 {
		t.Fatalf("%d approved, %d denied", ok, denied)
	}
	checkAnthropicUpstream(t, e, ant)
}

// azureStandIn streams a chat completion as Azure OpenAI does: the first
// chunk with empty choices and prompt_filter_results, a secret split
// across deltas. It refuses any key but the real Azure key.
func azureStandIn(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Api-Key") != testAzureKey {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"401","message":"Access denied due to invalid subscription key"}}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(data string) { fmt.Fprintf(w, "data: %s\n\n", data); w.(http.Flusher).Flush() }
	send(`{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}`)
	for _, p := range []string{"the key ", "AKIAIOSF", "ODNN7EXAMPLQ", " done"} {
		q, _ := json.Marshal(p)
		send(`{"choices":[{"content_filter_results":{},"delta":{"content":` + string(q) + `},"finish_reason":null,"index":0}],"created":1,"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"}`)
	}
	send(`{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0}],"created":1,"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"}`)
	send("[DONE]")
}

// TestAzureNodeSDK runs the official OpenAI Node SDK's AzureOpenAI client
// through the proxy: a deployment path, the runner token as api-key,
// streamed and masked.
func TestAzureNodeSDK(t *testing.T) {
	node := nodeSDK(t)
	e := newEnv(t, okJSON, func(o *Options) {
		o.Intercept = []string{"api.openai.com", "res1.openai.azure.com"}
		o.Keys = provider.Keys{provider.OpenAI: {"": testOpenAIKey}, provider.AzureOpenAI: {"": testAzureKey}}
	})
	az := e.addUpstream("res1.openai.azure.com", azureStandIn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "azure.mjs")
	cmd.Dir = nodeSDKDir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"AZURE_OPENAI_API_KEY=" + testRunnerToken,
		"AZURE_OPENAI_ENDPOINT=https://res1.openai.azure.com",
		"HTTPS_PROXY=" + e.proxyURL.String(),
		"NODE_EXTRA_CA_CERTS=" + e.caFile(),
	}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("node azure.mjs: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var got struct {
		Text   string `json:"text"`
		Chunks int    `json:"chunks"`
	}
	if err := json.Unmarshal(out, &got); err != nil || got.Text != "the key [MASKED:aws-access-key] done" || got.Chunks < 3 {
		t.Fatalf("SDK got %s (%v)", out, err)
	}
	seen := az.requests()
	if len(seen) != 1 || !strings.HasPrefix(seen[0].URL.Path, "/openai/deployments/gpt4o-prod/chat/completions") ||
		seen[0].URL.Query().Get("api-version") != "2024-10-21" || len(keysSeen(seen)) != 1 {
		t.Fatalf("stand-in saw %v", seen)
	}
	if rec := e.records()[len(e.records())-1]; rec.Provider != "azure-openai" || rec.Model != "gpt4o-prod" {
		t.Errorf("record provider %q model %q", rec.Provider, rec.Model)
	}
}

// TestAzureDeploymentStream: Azure OpenAI chat completions through a
// deployment path with the runner token in api-key, streamed, the first
// chunk with empty choices and prompt_filter_results; and the v1 path
// with a bearer token.
func TestAzureDeploymentStream(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) {
		o.Intercept = []string{"api.openai.com", "res1.openai.azure.com"}
		o.Keys = provider.Keys{provider.OpenAI: {"": testOpenAIKey}, provider.AzureOpenAI: {"": testAzureKey}}
	})
	az := e.addUpstream("res1.openai.azure.com", azureStandIn)
	streamBody := `{"messages":[{"role":"user","content":"hi"}],"stream":true}`
	for _, tc := range []struct{ path, header, value, model string }{
		{"/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21", "Api-Key", testRunnerToken, "gpt4o-prod"},
		{"/openai/v1/chat/completions", "Authorization", "Bearer " + testRunnerToken, "gpt-4o"},
	} {
		body := streamBody
		if tc.model == "gpt-4o" {
			body = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`
		}
		req, _ := http.NewRequest("POST", "https://res1.openai.azure.com"+tc.path, strings.NewReader(body))
		req.Header.Set(tc.header, tc.value)
		resp, out := do(t, e.client, req)
		if resp.StatusCode != 200 || !strings.Contains(string(out), "prompt_filter_results") || !strings.Contains(string(out), "[DONE]") {
			t.Fatalf("%s: status %d body %s", tc.path, resp.StatusCode, out)
		}
		if strings.Contains(string(out), "ODNN7EXAMPLQ") || !strings.Contains(string(out), "[MASKED:aws-access-key]") {
			t.Fatalf("%s: not masked:\n%s", tc.path, out)
		}
		rec := e.records()[len(e.records())-1]
		if rec.Provider != "azure-openai" || rec.Model != tc.model || rec.Outcome != store.OutcomeForwarded {
			t.Errorf("%s: record provider %q model %q outcome %q", tc.path, rec.Provider, rec.Model, rec.Outcome)
		}
	}
	for _, r := range az.requests() {
		if got := keysSeen([]*http.Request{r}); len(got) != 1 {
			t.Errorf("azure stand-in got credentials %q", got)
		}
	}
	if len(az.requests()) != 2 || len(e.upstreamRequests()) != 0 {
		t.Errorf("azure stand-in got %d, openai %d", len(az.requests()), len(e.upstreamRequests()))
	}
}
