package proxy

import "testing"

func TestUsageOf(t *testing.T) {
	cases := []struct {
		name   string
		answer string
		want   usage
	}{
		{"chat completion", `{"id":"chatcmpl-1","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}`,
			usage{Model: "gpt-4o", ID: "chatcmpl-1", In: 9, Out: 4}},
		{"chat stream with usage chunk", "data: {\"id\":\"c2\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n" +
			"data: {\"id\":\"c2\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
			usage{Model: "gpt-4o", ID: "c2", In: 3, Out: 2}},
		{"responses stream", "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\"}}\n\n" +
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"usage\":{\"input_tokens\":20,\"output_tokens\":7}}}\n\n",
			usage{Model: "gpt-5", ID: "resp_1", In: 20, Out: 7}},
		{"anthropic stream", "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":15,\"output_tokens\":1}}}\n\n" +
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":30}}\n\n",
			usage{Model: "claude", ID: "msg_1", In: 15, Out: 30}},
		{"websocket events", `{"type":"response.created","response":{"id":"resp_9","model":"gpt-5"}}` +
			`{"type":"response.output_text.delta","delta":"hi"}` +
			`{"type":"response.completed","response":{"id":"resp_9","model":"gpt-5","usage":{"input_tokens":8,"output_tokens":2}}}`,
			usage{Model: "gpt-5", ID: "resp_9", In: 8, Out: 2}},
		{"no usage", `{"choices":[]}`, usage{}},
		{"not JSON", "garbage\x00", usage{}},
		{"broken event", "data: {\"usage\":\n\n", usage{}},
		{"empty", "", usage{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := usageOf([]byte(c.answer)); got != c.want {
				t.Errorf("usageOf = %+v, want %+v", got, c.want)
			}
		})
	}
}

func FuzzUsageOf(f *testing.F) {
	f.Add([]byte(`{"usage":{"prompt_tokens":1}}`))
	f.Add([]byte("data: {\"response\":{\"usage\":{\"input_tokens\":2}}}\n\n"))
	f.Add([]byte(`{"usage":{"prompt_tokens":-5,"output_tokens":-1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Never panics, and never reports a negative count.
		if u := usageOf(b); u.In < 0 || u.Out < 0 {
			t.Errorf("usageOf(%q) = %+v", b, u)
		}
	})
}

func TestProviderAndOperation(t *testing.T) {
	for host, want := range map[string]string{
		"api.openai.com": "openai", "api.anthropic.com": "anthropic", "acme.openai.azure.com": "azure.ai.openai",
		TokenHost: "sessctl", "llm.internal.example": "other",
	} {
		if got := providerOf(host); got != want {
			t.Errorf("providerOf(%q) = %q, want %q", host, got, want)
		}
	}
	for path, want := range map[string]string{
		"/v1/chat/completions": "chat", "/v1/messages": "chat", "/v1/responses": "generate_content",
		"/v1/completions": "text_completion", "/v1/embeddings": "embeddings", "/v1/models": "other",
	} {
		if got := operationOf(path); got != want {
			t.Errorf("operationOf(%q) = %q, want %q", path, got, want)
		}
	}
}
