package usage

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/store"
)

func TestFromJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *store.Usage
	}{
		{"chat", `{"id":"c","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":3}}}`,
			&store.Usage{Input: 19, CachedInput: 4, Output: 10, Reasoning: 3, Total: 29}},
		{"embeddings", `{"object":"list","data":[],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`,
			&store.Usage{Input: 8, Total: 8}},
		{"responses body", `{"id":"resp_1","object":"response","usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":2},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}`,
			&store.Usage{Input: 36, CachedInput: 2, Output: 87, Reasoning: 64, Total: 123}},
		{"responses event", `{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}}`,
			&store.Usage{Input: 5, Output: 7, Total: 12}},
		{"total not recomputed", `{"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":99}}`,
			&store.Usage{Input: 5, Output: 7, Total: 99}},
		{"null usage", `{"choices":[{"delta":{"content":"hi"}}],"usage":null}`, nil},
		{"in progress", `{"type":"response.created","response":{"usage":null}}`, nil},
		{"no usage", `{"choices":[]}`, nil},
		{"negative", `{"usage":{"prompt_tokens":-1,"total_tokens":1}}`, nil},
		{"not numbers", `{"usage":{"prompt_tokens":"5"}}`, nil},
		{"empty object", `{"usage":{}}`, nil},
		{"not json", `data: {"usage"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FromJSON([]byte(tt.in))
			if ok != (tt.want != nil) {
				t.Fatalf("ok = %v, want %v", ok, tt.want != nil)
			}
			if tt.want != nil && *got != *tt.want {
				t.Fatalf("got %+v, want %+v", *got, *tt.want)
			}
		})
	}
}

func TestModel(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{`{"model":"gpt-4o-mini","messages":[]}`, "gpt-4o-mini", false},
		{`{"messages":[], "model" : "o3"}`, "o3", false},
		{`{"mod\u0065l":"o3"}`, "o3", false},
		{`{"model":"gpt-4o","model":"o1-pro"}`, "", true},
		{`{"model":"gpt-4o","Model":"o1-pro"}`, "", true},
		{`{"MODEL":"o1-pro"}`, "", true},
		{`{"model":["gpt-4o"]}`, "", true},
		{`{"model":""}`, "", true},
		{`{"messages":[]}`, "", true},
		{`[{"model":"gpt-4o"}]`, "", true},
		{`{"model":"gpt-4o"} {"model":"o1"}`, "", true},
		{`{"model":"gpt-4o"`, "", true},
		{`{"model":"` + strings.Repeat("a", 201) + `"}`, "", true},
	}
	for _, tt := range tests {
		got, err := Model([]byte(tt.in))
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("Model(%s) = %q, %v; want %q, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestEventModel(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{`{"type":"response.create","model":"gpt-4o"}`, "gpt-4o", false},
		{`{"type":"response.create","response":{"model":"gpt-4o"}}`, "gpt-4o", false},
		{`{"type":"response.create","model":"gpt-4o","response":{"model":"gpt-4o"}}`, "gpt-4o", false},
		{`{"type":"response.create","model":"gpt-4o","response":{"model":"o1-pro"}}`, "", true},
		{`{"type":"response.create","model":"gpt-4o","response":{"Model":"o1-pro"}}`, "", true},
		{`{"type":"response.create"}`, "", true},
	}
	for _, tt := range tests {
		got, err := EventModel([]byte(tt.in))
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("EventModel(%s) = %q, %v; want %q, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestAllowed(t *testing.T) {
	globs := []string{"gpt-4o-mini", "gpt-4.1*"}
	for model, want := range map[string]bool{
		"gpt-4o-mini": true, "gpt-4.1-nano": true, "GPT-4o-mini": false, " gpt-4o-mini": false,
		"gpt-4o-mini ": false, "gpt-4o": false, "o1-pro": false, "": false,
	} {
		if got := Allowed(globs, model); got != want {
			t.Errorf("Allowed(%q) = %v", model, got)
		}
	}
	if Allowed(nil, "gpt-4o") {
		t.Error("an empty allow-list allowed a model")
	}
}

func TestIncludeUsage(t *testing.T) {
	tests := []struct {
		in, want string
		changed  bool
	}{
		{`{"model":"m","stream":true}`, `{"stream_options":{"include_usage":true},"model":"m","stream":true}`, true},
		{`{"model":"m","stream":true,"stream_options":null}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, true},
		{`{"stream":true,"stream_options":{}}`, `{"stream":true,"stream_options":{"include_usage":true}}`, true},
		{`{"stream":true,"stream_options":{"include_obfuscation":false}}`, `{"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}`, true},
		{`{"stream":true,"stream_options":{"include_usage":false}}`, `{"stream":true,"stream_options":{"include_usage":true}}`, true},
		{`{"stream":true,"stream_options":{"include_usage":true}}`, `{"stream":true,"stream_options":{"include_usage":true}}`, false},
		{`{"stream":true,"Stream_Options":{}}`, `{"stream":true,"Stream_Options":{}}`, false},
		{`not json`, `not json`, false},
	}
	for _, tt := range tests {
		got, changed := IncludeUsage([]byte(tt.in))
		if string(got) != tt.want || changed != tt.changed {
			t.Errorf("IncludeUsage(%s) = %s, %v; want %s, %v", tt.in, got, changed, tt.want, tt.changed)
		}
	}
}

func TestStreamsChat(t *testing.T) {
	if !StreamsChat("/v1/chat/completions", []byte(`{"model":"m","stream":true}`)) {
		t.Error("streamed chat not recognised")
	}
	for _, c := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m"}`},
		{"/v1/chat/completions", `{"model":"m","stream":false}`},
		{"/v1/responses", `{"model":"m","stream":true}`},
		{"/v1/chat/completions", `{"stream":true,"Stream":false}`},
	} {
		if StreamsChat(c.path, []byte(c.body)) {
			t.Errorf("StreamsChat(%s, %s) = true", c.path, c.body)
		}
	}
}

// chatStream is a chat completion stream as OpenAI sends it with
// include_usage, and as it sends it without.
const (
	withUsage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n" +
		"data: [DONE]\n\n"
	withoutUsage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
		"data: [DONE]\n\n"
)

func TestStream(t *testing.T) {
	want := store.Usage{Input: 9, Output: 2, Total: 11}
	for _, strip := range []bool{false, true} {
		for _, size := range []int{1, 2, 7, 64, 1 << 20} {
			var out bytes.Buffer
			s := NewStream(&out, strip, 1<<20)
			in := []byte(withUsage)
			for len(in) > 0 {
				n := min(size, len(in))
				if _, err := s.Write(in[:n]); err != nil {
					t.Fatal(err)
				}
				in = in[n:]
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			expect := withUsage
			if strip {
				expect = withoutUsage
			}
			if out.String() != expect {
				t.Fatalf("strip=%v size=%d: runner got\n%s\nwant\n%s", strip, size, out.String(), expect)
			}
			if u := s.Usage(); u == nil || *u != want {
				t.Fatalf("strip=%v size=%d: usage %+v, want %+v", strip, size, u, want)
			}
		}
	}
}

func TestStreamResponsesAndCRLF(t *testing.T) {
	in := "event: response.created\r\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\r\n\r\n" +
		"event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\r\n\r\n" +
		"event: response.incomplete\r\ndata: {\"type\":\"response.incomplete\",\"response\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":16,\"output_tokens_details\":{\"reasoning_tokens\":16},\"total_tokens\":19}}}\r\n\r\n"
	var out bytes.Buffer
	s := NewStream(&out, true, 1<<20)
	s.Write([]byte(in))
	s.Close()
	if out.String() != in {
		t.Fatalf("a Responses stream was changed:\n%q", out.String())
	}
	if u := s.Usage(); u == nil || *u != (store.Usage{Input: 3, Output: 16, Reasoning: 16, Total: 19}) {
		t.Fatalf("usage %+v", u)
	}
}

func TestStreamOversizedEventPassesThrough(t *testing.T) {
	var out bytes.Buffer
	s := NewStream(&out, true, 4096)
	big := "data: " + strings.Repeat("x", 10000)
	s.Write([]byte(big))
	s.Write([]byte("\n\ndata: {\"usage\":null}\n\n"))
	s.Close()
	if out.String() != big+"\n\ndata: {\"usage\":null}\n\n" {
		t.Fatal("bytes after an oversized event were changed or lost")
	}
}

func FuzzStream(f *testing.F) {
	f.Add([]byte(withUsage), true)
	f.Add([]byte("data: {\"usage\":null,\"a\":1}\r\r"), true)
	f.Fuzz(func(t *testing.T, in []byte, strip bool) {
		var out bytes.Buffer
		s := NewStream(&out, strip, 4096)
		if _, err := s.Write(in); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if !strip && !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("without strip the stream changed")
		}
	})
}

func FuzzModel(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o"}`))
	f.Add([]byte(`{"model":"a","Model":"b"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Model(in)
		if err == nil && m == "" {
			t.Fatal("empty model without error")
		}
		if out, changed := IncludeUsage(in); changed && !json.Valid(out) {
			t.Fatalf("IncludeUsage made invalid JSON: %s", out)
		}
		if out, drop := stripChunk(in); !drop && json.Valid(in) && !json.Valid(out) {
			t.Fatalf("stripChunk made invalid JSON: %s", out)
		}
		FromJSON(in)
	})
}
