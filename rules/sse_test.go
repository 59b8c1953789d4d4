package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// streamAnswer is an answer with secrets of several shapes, short and long.
var streamAnswer = "Sure. The key is " + awsKey + ", the token " + ghTok +
	" and the OpenAI key " + fakeTokens["openai-api-key"][0] + ".\nA JWT: " + fakeTokens["jwt"][0] +
	"\nThe private key:\n" + fakeTokens["private-key"][0] + "\nThe hook: https://" + fakeTokens["slack-webhook"][0] +
	" — done é😀."

func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// chatStream renders deltas as a chat completions SSE stream.
func chatStream(deltas []string) []byte {
	var b strings.Builder
	b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n")
	for _, d := range deltas {
		fmt.Fprintf(&b, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}]}`+"\n\n", q(d))
	}
	b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n")
	b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return []byte(b.String())
}

// responsesStream renders deltas as a Responses API SSE stream.
func responsesStream(deltas []string) []byte {
	full := strings.Join(deltas, "")
	var b strings.Builder
	seq := 0
	ev := func(typ, body string) {
		fmt.Fprintf(&b, "event: %s\ndata: {\"type\":%q,%s,\"sequence_number\":%d}\n\n", typ, typ, body, seq)
		seq++
	}
	ev("response.created", `"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)
	ev("response.output_item.added", `"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}`)
	ev("response.content_part.added", `"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}`)
	for _, d := range deltas {
		ev("response.output_text.delta", `"item_id":"msg_1","output_index":0,"content_index":0,"delta":`+q(d)+`,"logprobs":[]`)
	}
	ev("response.output_text.done", `"item_id":"msg_1","output_index":0,"content_index":0,"text":`+q(full)+`,"logprobs":[]`)
	ev("response.content_part.done", `"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":`+q(full)+`,"annotations":[]}`)
	ev("response.output_item.done", `"output_index":0,"item":{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":`+q(full)+`,"annotations":[]}]}`)
	ev("response.completed", `"response":{"id":"resp_1","object":"response","status":"completed","output":[{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":`+q(full)+`,"annotations":[]}]}]}`)
	return []byte(b.String())
}

// sseEvent is one parsed output event.
type sseEvent struct {
	name string
	data string
}

// parseSSE parses a stream written with LF line ends.
func parseSSE(t testing.TB, b []byte) []sseEvent {
	t.Helper()
	var evs []sseEvent
	for _, block := range strings.Split(string(b), "\n\n") {
		if block == "" {
			continue
		}
		var ev sseEvent
		var data []string
		for _, l := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(l, "event: "):
				ev.name = l[len("event: "):]
			case strings.HasPrefix(l, "data: "):
				data = append(data, l[len("data: "):])
			}
		}
		ev.data = strings.Join(data, "\n")
		evs = append(evs, ev)
	}
	return evs
}

// joinChat joins the content deltas of choice 0 of a chat stream.
func joinChat(t testing.TB, evs []sseEvent) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range evs {
		if ev.data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Index int
				Delta struct{ Content string }
			}
		}
		if err := json.Unmarshal([]byte(ev.data), &chunk); err != nil {
			t.Fatalf("event %q is not JSON: %v", ev.data, err)
		}
		for _, c := range chunk.Choices {
			if c.Index == 0 {
				b.WriteString(c.Delta.Content)
			}
		}
	}
	return b.String()
}

// runSSE masks stream, written in chunks of random size, and returns the
// output and the masker. It fails the test if a secret ever reaches dst.
func runSSE(t testing.TB, s *Set, stream []byte, r *rand.Rand, secrets []string) ([]byte, *SSEMasker) {
	t.Helper()
	var out bytes.Buffer
	check := func() {
		for _, sec := range secrets {
			if bytes.Contains(out.Bytes(), []byte(sec)) {
				t.Fatalf("secret %q reached the client", sec)
			}
		}
	}
	m := s.NewSSE(&out, check, StreamOptions{})
	for rest := stream; len(rest) > 0; {
		n := len(rest)
		if r != nil {
			n = min(n, 1+r.IntN(300))
		}
		if _, err := m.Write(rest[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		rest = rest[n:]
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check()
	return out.Bytes(), m
}

func streamSecrets() []string {
	return []string{awsKey, ghTok, fakeTokens["openai-api-key"][0], fakeTokens["jwt"][0], "MIIEpAIBAAKCAQEA1c3Rk", fakeTokens["slack-webhook"][0]}
}

// splits returns ways to cut text into deltas: at every rune position in
// two, and into pieces of k runes for several k.
func splits(text string) [][]string {
	var out [][]string
	for i := range text {
		out = append(out, []string{text[:i], text[i:]})
	}
	for _, k := range []int{1, 2, 3, 5, 8, 13} {
		var ds []string
		rs := []rune(text)
		for i := 0; i < len(rs); i += k {
			ds = append(ds, string(rs[i:min(i+k, len(rs))]))
		}
		out = append(out, ds)
	}
	return out
}

func TestSSEChatSplitEverywhere(t *testing.T) {
	s := Default()
	want := string(s.Response([]byte(streamAnswer)).Body)
	if strings.Contains(want, awsKey) || want == streamAnswer {
		t.Fatal("the whole answer is not masked")
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, deltas := range splits(streamAnswer) {
		out, m := runSSE(t, s, chatStream(deltas), r, streamSecrets())
		evs := parseSSE(t, out)
		if got := joinChat(t, evs); got != want {
			t.Fatalf("deltas %q:\ngot  %q\nwant %q", deltas, got, want)
		}
		if evs[len(evs)-1].data != "[DONE]" {
			t.Fatalf("stream does not end with [DONE]: %q", evs[len(evs)-1])
		}
		if !fired(m.Result(), "jwt") || len(m.Result().Secrets) != 6 {
			t.Fatalf("result %+v", m.Result())
		}
	}
}

func TestSSEResponsesSplitEverywhere(t *testing.T) {
	s := Default()
	want := string(s.Response([]byte(streamAnswer)).Body)
	r := rand.New(rand.NewPCG(9, 10))
	for _, deltas := range splits(streamAnswer) {
		out, m := runSSE(t, s, responsesStream(deltas), r, streamSecrets())
		evs := parseSSE(t, out)
		var text strings.Builder
		var sawDone, sawCompleted bool
		for _, ev := range evs {
			var e struct {
				Type  string
				Delta string
				Text  string
				Resp  struct {
					Output []struct{ Content []struct{ Text string } }
				} `json:"response"`
			}
			if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
				t.Fatalf("event %q: %v", ev.data, err)
			}
			if ev.name != e.Type {
				t.Fatalf("event name %q for type %q", ev.name, e.Type)
			}
			switch e.Type {
			case "response.output_text.delta":
				text.WriteString(e.Delta)
			case "response.output_text.done":
				sawDone = true
				if e.Text != want {
					t.Fatalf("done text %q, want %q", e.Text, want)
				}
				if text.String() != want {
					t.Fatalf("deltas %q before done: got %q, want %q", deltas, text.String(), want)
				}
			case "response.completed":
				sawCompleted = true
				if got := e.Resp.Output[0].Content[0].Text; got != want {
					t.Fatalf("completed text %q", got)
				}
			}
		}
		if !sawDone || !sawCompleted {
			t.Fatalf("events lost: %q", out)
		}
		for _, h := range m.Result().Hits {
			if h.Count != 1 {
				t.Fatalf("hit %+v counted the repeated texts", h)
			}
		}
	}
}

func TestSSEToolCallArguments(t *testing.T) {
	s := Default()
	args0 := `{"command":"aws configure set aws_access_key_id ` + awsKey + `"}`
	args1 := `{"token":"` + ghTok + `"}`
	for cut := range len(args0) {
		var b strings.Builder
		chunk := func(delta string) {
			fmt.Fprintf(&b, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":%s,"finish_reason":null}]}`+"\n\n", delta)
		}
		chunk(`{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"shell","arguments":""}}]}`)
		chunk(`{"tool_calls":[{"index":0,"function":{"arguments":` + q(args0[:cut]) + `}}]}`)
		chunk(`{"tool_calls":[{"index":0,"function":{"arguments":` + q(args0[cut:]) + `}}]}`)
		c1 := min(cut, len(args1))
		chunk(`{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"gh","arguments":` + q(args1[:c1]) + `}}]}`)
		chunk(`{"tool_calls":[{"index":1,"function":{"arguments":` + q(args1[c1:]) + `}}]}`)
		b.WriteString(`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\ndata: [DONE]\n\n")
		out, _ := runSSE(t, s, []byte(b.String()), nil, []string{awsKey, ghTok})
		args := map[int]string{}
		for _, ev := range parseSSE(t, out) {
			if ev.data == "[DONE]" {
				continue
			}
			var c struct {
				Choices []struct {
					Delta struct {
						ToolCalls []struct {
							Index    int
							Function struct{ Arguments string }
						} `json:"tool_calls"`
					}
				}
			}
			if err := json.Unmarshal([]byte(ev.data), &c); err != nil {
				t.Fatal(err)
			}
			for _, ch := range c.Choices {
				for _, tc := range ch.Delta.ToolCalls {
					args[tc.Index] += tc.Function.Arguments
				}
			}
		}
		if want := strings.Replace(args0, awsKey, "[MASKED:aws-access-key]", 1); args[0] != want {
			t.Fatalf("cut %d: args0 %q, want %q", cut, args[0], want)
		}
		if want := strings.Replace(args1, ghTok, "[MASKED:github-token]", 1); args[1] != want {
			t.Fatalf("cut %d: args1 %q, want %q", cut, args[1], want)
		}
	}
}
