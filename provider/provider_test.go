package provider

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

func TestForHost(t *testing.T) {
	assigned := map[string]string{"LLM.corp.example.": "azure-openai", "bad.example": "gemini"}
	for _, tc := range []struct {
		host string
		want Name
		ok   bool
	}{
		{"api.openai.com", OpenAI, true},
		{"API.OpenAI.com.", OpenAI, true},
		{"api.anthropic.com", Anthropic, true},
		{"res1.openai.azure.com", AzureOpenAI, true},
		{"*.openai.azure.com", AzureOpenAI, true},
		{"openai.azure.com", "", false},
		{"evil-openai.azure.com", "", false},
		{"llm.corp.example", AzureOpenAI, true},
		{"bad.example", "", false},
		{"anthropic.com", "", false},
		{"example.com", "", false},
	} {
		got, ok := ForHost(tc.host, assigned)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ForHost(%q) = %q, %v; want %q, %v", tc.host, got, ok, tc.want, tc.ok)
		}
	}
}

// TestCredentialAndKey: each provider finds the runner's credential where
// its clients put it, and SetKey leaves exactly one credential header,
// the real key, whatever headers the runner set.
func TestCredentialAndKey(t *testing.T) {
	all := http.Header{"Authorization": {"Bearer runner"}, "X-Api-Key": {"runner"}, "Api-Key": {"runner"}}
	for _, tc := range []struct {
		p          Name
		in         http.Header
		cred       string
		keyHeader  string
		keyValue   string
		forwards   string
		notForward string
	}{
		{OpenAI, http.Header{"Authorization": {"Bearer tok"}}, "tok", "Authorization", "Bearer real", "/v1/chat/completions", ""},
		{OpenAI, http.Header{"X-Api-Key": {"tok"}}, "", "Authorization", "Bearer real", "/anything", ""},
		{Anthropic, http.Header{"X-Api-Key": {"tok"}}, "tok", "X-Api-Key", "real", "/v1/messages", "/api/event_logging/batch"},
		{Anthropic, http.Header{"Authorization": {"Bearer tok"}}, "tok", "X-Api-Key", "real", "/v1/models", "/api/claude_code/settings"},
		{AzureOpenAI, http.Header{"Api-Key": {"tok"}}, "tok", "Api-Key", "real", "/openai/deployments/x/chat/completions", ""},
		{AzureOpenAI, http.Header{"Authorization": {"Bearer tok"}}, "tok", "Api-Key", "real", "/openai/v1/responses", ""},
	} {
		p := For(tc.p)
		if got := p.Credential(tc.in); got != tc.cred {
			t.Errorf("%s: Credential(%v) = %q, want %q", tc.p, tc.in, got, tc.cred)
		}
		h := all.Clone()
		p.SetKey(h, "real")
		if len(h) != 1 || h.Get(tc.keyHeader) != tc.keyValue {
			t.Errorf("%s: SetKey left %v, want only %s: %s", tc.p, h, tc.keyHeader, tc.keyValue)
		}
		if !p.Forwards(tc.forwards) || tc.notForward != "" && p.Forwards(tc.notForward) {
			t.Errorf("%s: Forwards(%q) or not %q wrong", tc.p, tc.forwards, tc.notForward)
		}
	}
}

func TestModel(t *testing.T) {
	req := func(path string) *http.Request { return &http.Request{URL: &url.URL{Path: path}} }
	body := []byte(`{"model":"gpt-4o","messages":[]}`)
	for _, tc := range []struct {
		p    Name
		r    *http.Request
		body []byte
		want string
	}{
		{OpenAI, req("/v1/chat/completions"), body, "gpt-4o"},
		{AzureOpenAI, req("/openai/deployments/prod-4o/chat/completions"), []byte(`{}`), "prod-4o"},
		{AzureOpenAI, req("/openai/v1/chat/completions"), body, "gpt-4o"},
		{Anthropic, req("/v1/messages"), []byte(`{"model":"claude-sonnet-4-5"}`), "claude-sonnet-4-5"},
		{Anthropic, req("/v1/messages"), []byte(`not json`), ""},
	} {
		if got := For(tc.p).Model(tc.r, tc.body); got != tc.want {
			t.Errorf("%s %s: Model = %q, want %q", tc.p, tc.r.URL.Path, got, tc.want)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p      Name
		answer string
		stream bool
		want   Usage
	}{
		{"chat", OpenAI, `{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}}`, false, Usage{10, 5, 4, 0}},
		{"responses", OpenAI, `{"usage":{"input_tokens":7,"output_tokens":3}}`, false, Usage{InputTokens: 7, OutputTokens: 3}},
		{"chat stream", AzureOpenAI, "data: {\"choices\":[],\"prompt_filter_results\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n", true, Usage{InputTokens: 8, OutputTokens: 2}},
		{"responses stream", OpenAI, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":4,\"output_tokens\":6}}}\n\n", true, Usage{InputTokens: 4, OutputTokens: 6}},
		{"message", Anthropic, `{"usage":{"input_tokens":9,"output_tokens":3,"cache_creation_input_tokens":100,"cache_read_input_tokens":50}}`, false, Usage{9, 3, 50, 100}},
		{"count_tokens", Anthropic, `{"input_tokens":12}`, false, Usage{InputTokens: 12}},
		{"message stream", Anthropic, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":11,\"output_tokens\":1,\"cache_read_input_tokens\":5}}}\n\nevent: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\r\n\r\n", true, Usage{11, 15, 5, 0}},
		{"garbage", Anthropic, "{", false, Usage{}},
		{"negative counts", OpenAI, `{"usage":{"prompt_tokens":-10,"input_tokens":3,"completion_tokens":-1}}`, false, Usage{InputTokens: 3}},
		{"negative anthropic", Anthropic, `{"usage":{"input_tokens":-9,"output_tokens":2}}`, false, Usage{OutputTokens: 2}},
	} {
		if got := For(tc.p).Usage([]byte(tc.answer), tc.stream); got != tc.want {
			t.Errorf("%s: Usage = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestErrorBody(t *testing.T) {
	var ant struct {
		Type  string `json:"type"`
		Error struct {
			Type, Message string
		} `json:"error"`
	}
	if err := json.Unmarshal(For(Anthropic).ErrorBody(403, "sessctl_forbidden", "x", "no"), &ant); err != nil ||
		ant.Type != "error" || ant.Error.Type != "permission_error" || ant.Error.Message != "no" {
		t.Errorf("anthropic error %+v, %v", ant, err)
	}
	var oa struct {
		Error struct {
			Type, Code, Message string
		} `json:"error"`
	}
	for _, p := range []Name{OpenAI, AzureOpenAI} {
		if err := json.Unmarshal(For(p).ErrorBody(403, "sessctl_forbidden", "x", "no"), &oa); err != nil ||
			oa.Error.Type != "sessctl_forbidden" || oa.Error.Code != "x" || oa.Error.Message != "no" {
			t.Errorf("%s error %+v, %v", p, oa, err)
		}
	}
	for status, want := range map[int]string{400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
		413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error", 502: "api_error"} {
		if got := AnthropicErrorType(status); got != want {
			t.Errorf("AnthropicErrorType(%d) = %q, want %q", status, got, want)
		}
	}
}

func TestKeys(t *testing.T) {
	k := Keys{}
	k.Set(OpenAI, "", "sk-o")
	k.Set(OpenAI, "team", "sk-t")
	if v, ok := k.Key(OpenAI, "team"); !ok || v != "sk-t" {
		t.Error("openai team key missing")
	}
	if _, ok := k.Key(Anthropic, "team"); ok {
		t.Error("an OpenAI key was found under Anthropic")
	}
	if _, ok := k.Key(Anthropic, ""); ok {
		t.Error("a default key was found for Anthropic")
	}
}

func FuzzUsage(f *testing.F) {
	f.Add([]byte("event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n"), true)
	f.Add([]byte(`{"usage":{"prompt_tokens":1}}`), false)
	f.Fuzz(func(t *testing.T, b []byte, stream bool) {
		for _, p := range Names() {
			u := For(p).Usage(b, stream)
			if u.InputTokens < 0 || u.OutputTokens < 0 || u.CacheReadTokens < 0 || u.CacheWriteTokens < 0 {
				t.Fatalf("%s: negative usage %+v from %q", p, u, b)
			}
		}
	})
}
