package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/store"
)

const (
	testOpenAIKey    = "sk-proj-openai-real-key-0123456789"
	testAnthropicKey = "sk-ant-api03-anthropic-real-key-0123456789"
	testAzureKey     = "azure-real-key-0123456789abcdef"
	messagesBody     = `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"say hi"}]}`
)

func anthropicOK(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":1}}`)
}

// allKeys are the upstream headers any provider's key could travel in.
var allKeyHeaders = []string{"Authorization", "X-Api-Key", "Api-Key"}

// keysSeen returns every credential header value the requests carried.
func keysSeen(reqs []*http.Request) []string {
	var out []string
	for _, r := range reqs {
		for _, h := range allKeyHeaders {
			out = append(out, r.Header.Values(h)...)
		}
	}
	return out
}

// TestKeyGoesOnlyToItsProvidersHosts: with OpenAI and Anthropic both
// intercepted, each real key reaches the stand-in of its own provider
// only, in that provider's header, and the runner's token reaches neither.
func TestKeyGoesOnlyToItsProvidersHosts(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) {
		o.Intercept = []string{"api.openai.com", "api.anthropic.com", "llm.corp.example"}
		o.Providers = map[string]string{"llm.corp.example": "azure-openai"}
		o.Keys = provider.Keys{
			provider.OpenAI:      {"": testOpenAIKey},
			provider.Anthropic:   {"": testAnthropicKey},
			provider.AzureOpenAI: {"": testAzureKey},
		}
	})
	ant := e.addUpstream("api.anthropic.com", anthropicOK)
	az := e.addUpstream("llm.corp.example", okJSON)

	// Anthropic, credential as the Node SDK sends it (bearer), then as
	// Claude Code does (x-api-key).
	for _, hdr := range []string{"Authorization", "X-Api-Key"} {
		req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages", strings.NewReader(messagesBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Anthropic-Version", "2023-06-01")
		req.Header.Set("Anthropic-Beta", "interleaved-thinking-2025-05-14")
		if hdr == "Authorization" {
			req.Header.Set(hdr, "Bearer "+testRunnerToken)
		} else {
			req.Header.Set(hdr, testRunnerToken)
		}
		resp, body := do(t, e.client, req)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"text":"hi"`) {
			t.Fatalf("anthropic via %s: status %d body %s", hdr, resp.StatusCode, body)
		}
	}
	// OpenAI, and Azure OpenAI through a host assigned to it.
	if resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody); resp.StatusCode != 200 {
		t.Fatalf("openai: status %d body %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("POST", "https://llm.corp.example/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21", strings.NewReader(chatBody))
	req.Header.Set("Api-Key", testRunnerToken)
	if resp, body := do(t, e.client, req); resp.StatusCode != 200 {
		t.Fatalf("azure: status %d body %s", resp.StatusCode, body)
	}

	antSeen := ant.requests()
	if len(antSeen) != 2 {
		t.Fatalf("anthropic stand-in saw %d requests, want 2", len(antSeen))
	}
	for _, r := range antSeen {
		if got := keysSeen([]*http.Request{r}); len(got) != 1 || r.Header.Get("X-Api-Key") != testAnthropicKey {
			t.Errorf("anthropic stand-in got credentials %q, want only x-api-key with the Anthropic key", got)
		}
		if r.Header.Get("Anthropic-Version") != "2023-06-01" || r.Header.Get("Anthropic-Beta") != "interleaved-thinking-2025-05-14" {
			t.Errorf("anthropic-version/beta not passed: %v", r.Header)
		}
	}
	oaSeen := e.upstreamRequests()
	if got := keysSeen(oaSeen); len(oaSeen) != 1 || len(got) != 1 || got[0] != "Bearer "+testOpenAIKey {
		t.Errorf("openai stand-in saw %d requests with credentials %q, want one with the OpenAI key only", len(oaSeen), got)
	}
	azSeen := az.requests()
	if got := keysSeen(azSeen); len(azSeen) != 1 || len(got) != 1 || azSeen[0].Header.Get("Api-Key") != testAzureKey {
		t.Errorf("azure stand-in saw %d requests with credentials %q, want one with api-key the Azure key", len(azSeen), got)
	}
	for _, r := range append(append(antSeen, oaSeen...), azSeen...) {
		for _, v := range keysSeen([]*http.Request{r}) {
			if strings.Contains(v, testRunnerToken) {
				t.Errorf("the runner token reached %s", r.Host)
			}
		}
	}

	// Records carry the provider and the model (Azure: the deployment).
	want := map[string][2]string{
		"api.anthropic.com": {"anthropic", "claude-sonnet-4-5"},
		"api.openai.com":    {"openai", "gpt-4o-mini"},
		"llm.corp.example":  {"azure-openai", "gpt4o-prod"},
	}
	n := 0
	for _, rec := range e.records() {
		if rec.Kind != store.KindExchange {
			continue
		}
		n++
		if w := want[rec.Host]; rec.Provider != w[0] || rec.Model != w[1] {
			t.Errorf("record for %s: provider %q model %q, want %q %q", rec.Host, rec.Provider, rec.Model, w[0], w[1])
		}
	}
	if n != 4 {
		t.Errorf("%d exchange records, want 4", n)
	}
}

// TestNoKeyOfTheHostsProviderIsRefused: a provider without a key of its
// own gets 503 in its own error shape, and nothing is sent, even though
// another provider's key (of the same name) is configured.
func TestNoKeyOfTheHostsProviderIsRefused(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) {
		o.Intercept = []string{"api.openai.com", "api.anthropic.com"}
		o.Keys = provider.Keys{provider.OpenAI: {"": testOpenAIKey, "team": "sk-team-openai-key-000000"}}
		o.Policies = []identity.Policy{{Name: "team-policy", Match: map[string]string{"runner": "ci-1"}, Key: "team"}}
	})
	ant := e.addUpstream("api.anthropic.com", anthropicOK)
	req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages", strings.NewReader(messagesBody))
	req.Header.Set("X-Api-Key", testRunnerToken)
	resp, body := do(t, e.client, req)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Should-Retry") != "false" {
		t.Fatalf("status %d (x-should-retry %q), want 503 not to retry; body %s", resp.StatusCode, resp.Header.Get("X-Should-Retry"), body)
	}
	var ae struct {
		Type  string `json:"type"`
		Error struct {
			Type, Message string
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &ae); err != nil || ae.Type != "error" || ae.Error.Type != "overloaded_error" ||
		!strings.Contains(ae.Error.Message, "team") {
		t.Errorf("not an Anthropic-shaped error naming the missing key: %s", body)
	}
	if n := len(ant.requests()) + len(e.upstreamRequests()); n != 0 {
		t.Fatalf("%d requests reached an upstream", n)
	}
	// OpenAI still gets the policy's key.
	if resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody); resp.StatusCode != 200 {
		t.Fatalf("openai: status %d body %s", resp.StatusCode, body)
	}
	if got := e.upstreamRequests()[0].Header.Get("Authorization"); got != "Bearer sk-team-openai-key-000000" {
		t.Errorf("openai got %q, want the policy's key", got)
	}
	recs := e.records()
	var refused *store.Record
	for _, r := range recs {
		if r.Host == "api.anthropic.com" {
			refused = r
		}
	}
	if refused == nil || refused.Kind != store.KindRefused || refused.Provider != "anthropic" {
		t.Errorf("refusal record = %+v", refused)
	}
}

// TestInterceptedHostWithoutProvider: the proxy itself refuses to start
// with an intercepted host it knows no provider for.
func TestInterceptedHostWithoutProvider(t *testing.T) {
	e := newEnv(t, okJSON)
	o := e.proxy.opt
	o.Intercept = []string{"api.openai.com", "llm.corp.example"}
	o.Providers = nil
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "llm.corp.example has no known provider") {
		t.Fatalf("New = %v, want a refusal naming the host", err)
	}
}

// TestWildcardIntercept: "*.openai.azure.com" intercepts any Azure
// resource host as azure-openai, with the Azure key; names it does not
// cover are refused at CONNECT.
func TestWildcardIntercept(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) {
		o.Intercept = []string{"api.openai.com", "*.openai.azure.com"}
		o.Keys = provider.Keys{provider.OpenAI: {"": testOpenAIKey}, provider.AzureOpenAI: {"": testAzureKey}}
	})
	az := e.addUpstream("res1.openai.azure.com", okJSON)
	req, _ := http.NewRequest("POST", "https://res1.openai.azure.com/openai/deployments/d1/chat/completions?api-version=2024-10-21", strings.NewReader(chatBody))
	req.Header.Set("Api-Key", testRunnerToken)
	if resp, body := do(t, e.client, req); resp.StatusCode != 200 {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if seen := az.requests(); len(seen) != 1 || seen[0].Header.Get("Api-Key") != testAzureKey || len(keysSeen(seen)) != 1 {
		t.Fatalf("azure stand-in saw %v", keysSeen(seen))
	}
	if rec := e.records()[len(e.records())-1]; rec.Provider != "azure-openai" || rec.Model != "d1" {
		t.Errorf("record provider %q model %q", rec.Provider, rec.Model)
	}
	for _, host := range []string{"openai.azure.com", "a.b.openai.azure.com", "api.anthropic.com"} {
		if e.proxy.intercepts(host) {
			t.Errorf("%s is intercepted", host)
		}
	}
	if _, err := e.client.Get("https://a.b.openai.azure.com/"); err == nil {
		t.Error("a CONNECT to a.b.openai.azure.com was accepted")
	}
}
