package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// antEvent is one event of an Anthropic Messages stream, as SSE.
func antEvent(typ, data string) string { return "event: " + typ + "\ndata: " + data + "\n\n" }

func antDelta(index int, kind, field, piece string) string {
	return antEvent("content_block_delta", `{"type":"content_block_delta","index":`+itoa(index)+`,"delta":{"type":"`+kind+`","`+field+`":`+q(piece)+`}}`)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// antStream is a whole Messages stream with one content block of the
// given type, whose deltas are pieces.
func antStream(blockStart, kind, field string, pieces []string, extra ...string) string {
	var b strings.Builder
	b.WriteString(antEvent("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":10,"output_tokens":1}}}`))
	b.WriteString(antEvent("content_block_start", `{"type":"content_block_start","index":0,"content_block":`+blockStart+`}`))
	b.WriteString(antEvent("ping", `{"type": "ping"}`))
	for _, p := range pieces {
		b.WriteString(antDelta(0, kind, field, p))
	}
	for _, e := range extra {
		b.WriteString(e)
	}
	b.WriteString(antEvent("content_block_stop", `{"type":"content_block_stop","index":0}`))
	b.WriteString(antEvent("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}`))
	b.WriteString(antEvent("message_stop", `{"type":"message_stop"}`))
	return b.String()
}

// maskAnt runs stream through an Anthropic SSE masker, one write per
// event, and returns what the client got.
func maskAnt(t *testing.T, s *Set, stream string) (string, *SSEMasker) {
	t.Helper()
	var out bytes.Buffer
	m := s.NewSSE(&out, nil, StreamOptions{Dialect: DialectAnthropic})
	for _, ev := range strings.SplitAfter(stream, "\n\n") {
		if _, err := m.Write([]byte(ev)); err != nil {
			if errors.Is(err, ErrBlocked) {
				break
			}
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String(), m
}

// joinAnt joins the named delta field of block 0, checking that every
// event is well-formed JSON and every delta event is named as it should.
func joinAnt(t *testing.T, out, field string) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range parseSSE(t, []byte(out)) {
		var v struct {
			Type  string                     `json:"type"`
			Index int                        `json:"index"`
			Delta map[string]json.RawMessage `json:"delta"`
		}
		if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
			t.Fatalf("event %q is not JSON: %v", ev.data, err)
		}
		if v.Type != ev.name {
			t.Fatalf("event named %q carries type %q", ev.name, v.Type)
		}
		if v.Type == "content_block_delta" && v.Delta[field] != nil {
			var s string
			json.Unmarshal(v.Delta[field], &s)
			b.WriteString(s)
		}
	}
	return b.String()
}

// TestAnthropicSecretSplitAtEveryPoint: a secret split across two (and
// three) text deltas, at every split point, never reaches the client, and
// the text the client assembles is the text masked whole.
func TestAnthropicSecretSplitAtEveryPoint(t *testing.T) {
	s := Default()
	text := "Here is the key " + awsKey + " and the rest."
	want := string(s.Response([]byte(text)).Body)
	if want == text {
		t.Fatal("the default rules do not mask the test secret")
	}
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j += max(1, len(text)/7) {
			pieces := []string{text[:i], text[i:j], text[j:]}
			out, m := maskAnt(t, s, antStream(`{"type":"text","text":""}`, "text_delta", "text", pieces))
			if strings.Contains(out, awsKey) || strings.Contains(out, awsKey[4:]) {
				t.Fatalf("split %d,%d: the secret reached the client:\n%s", i, j, out)
			}
			if got := joinAnt(t, out, "text"); got != want {
				t.Fatalf("split %d,%d: client text %q, want %q", i, j, got, want)
			}
			if m.Blocked() != nil || !fired(m.Result(), "aws-access-key-id") && len(m.Result().Hits) == 0 {
				t.Fatalf("split %d,%d: result %+v blocked %v", i, j, m.Result(), m.Blocked())
			}
			// The content_block_stop comes after the last text.
			if k := strings.LastIndex(out, "content_block_delta"); k > strings.Index(out, "content_block_stop") {
				t.Fatalf("split %d,%d: a delta after content_block_stop:\n%s", i, j, out)
			}
		}
	}
}

// TestAnthropicToolJSONStaysValid: a secret inside a tool's input, split
// across input_json_delta pieces at every point, is masked, and the input
// the client reassembles is valid JSON equal to the input masked whole.
func TestAnthropicToolJSONStaysValid(t *testing.T) {
	s := mustSet(t,
		Rule{Name: "aws", Pattern: `AKIA[0-9A-Z]{16}`, Action: Mask, Replacement: `"\masked"`},
		Rule{Name: "tok", Pattern: `tok_[a-z]+\\`, Action: Mask},
	)
	input := `{"command":"export AWS_ACCESS_KEY_ID=` + awsKey + `","note":"a \"quoted\" tok_abc\\n line"}`
	if !json.Valid([]byte(input)) {
		t.Fatal("bad test input")
	}
	for i := 0; i <= len(input); i++ {
		pieces := []string{input[:i], input[i:]}
		out, m := maskAnt(t, s, antStream(`{"type":"tool_use","id":"toolu_1","name":"bash","input":{}}`, "input_json_delta", "partial_json", pieces))
		if strings.Contains(out, awsKey[4:]) {
			t.Fatalf("split %d: the secret reached the client", i)
		}
		got := joinAnt(t, out, "partial_json")
		var v map[string]string
		if err := json.Unmarshal([]byte(got), &v); err != nil {
			t.Fatalf("split %d: tool input %q is not valid JSON: %v", i, got, err)
		}
		if v["command"] != `export AWS_ACCESS_KEY_ID="\masked"` || !strings.Contains(v["note"], "[MASKED:tok]") {
			t.Fatalf("split %d: tool input %q", i, v)
		}
		if m.Blocked() != nil {
			t.Fatalf("split %d: blocked", i)
		}
	}
}

// TestAnthropicThinkingIsNotEdited: a mask rule firing inside a thinking
// block ends the answer with an Anthropic error event (the block is
// signed, sessctl does not edit it); signatures are never scanned.
func TestAnthropicThinkingIsNotEdited(t *testing.T) {
	s := Default()
	// A signature that happens to contain what looks like a secret.
	sig := "EqQBCkYIARgCIkB" + awsKey + "zZ9/+abc=="
	clean := antStream(`{"type":"thinking","thinking":"","signature":""}`, "thinking_delta", "thinking",
		[]string{"Let me think ", "about it."}, antDelta(0, "signature_delta", "signature", sig))
	out, m := maskAnt(t, s, clean)
	if m.Blocked() != nil || !strings.Contains(out, q(sig)) || joinAnt(t, out, "thinking") != "Let me think about it." {
		t.Fatalf("clean thinking block edited or blocked (%v):\n%s", m.Blocked(), out)
	}

	leaky := antStream(`{"type":"thinking","thinking":"","signature":""}`, "thinking_delta", "thinking",
		[]string{"The key is AKIA", awsKey[4:] + ", so."}, antDelta(0, "signature_delta", "signature", sig))
	out, m = maskAnt(t, s, leaky)
	if m.Blocked() == nil || !m.InThinking() {
		t.Fatalf("Blocked = %v, InThinking = %v", m.Blocked(), m.InThinking())
	}
	if strings.Contains(out, awsKey[4:]) || strings.Contains(out, "[MASKED") {
		t.Fatalf("thinking text edited or leaked:\n%s", out)
	}
	evs := parseSSE(t, []byte(out))
	last := evs[len(evs)-1]
	var e struct {
		Type  string `json:"type"`
		Error struct{ Type, Message string }
	}
	if last.name != "error" || json.Unmarshal([]byte(last.data), &e) != nil || e.Type != "error" ||
		e.Error.Type != "permission_error" || !strings.Contains(e.Error.Message, "thinking block") {
		t.Fatalf("last event %+v, want an Anthropic error event about the thinking block", last)
	}
}

// TestAnthropicBlockEndsWithErrorEvent: a block rule ends the stream with
// an Anthropic-shaped error event, and nothing after it.
func TestAnthropicBlockEndsWithErrorEvent(t *testing.T) {
	s := mustSet(t, Rule{Name: "no-drop", Pattern: `(?i)drop\s+table`, Action: Block, Scope: []string{ScopeResponse}, Message: "no SQL"})
	out, m := maskAnt(t, s, antStream(`{"type":"text","text":""}`, "text_delta", "text", []string{"Run: DROP ", "TABLE users;", " then more"}))
	if b := m.Blocked(); b == nil || b.Name != "no-drop" || m.InThinking() {
		t.Fatalf("Blocked = %v", b)
	}
	evs := parseSSE(t, []byte(out))
	last := evs[len(evs)-1]
	want := `{"type":"error","error":{"type":"permission_error","message":"sessctl: answer blocked by rule \"no-drop\": no SQL","sessctl_code":"no-drop"}}`
	if last.name != "error" || last.data != want {
		t.Fatalf("last event %+v\nwant %s", last, want)
	}
	if strings.Contains(out, "TABLE") || strings.Contains(out, "more") || strings.Contains(out, "message_stop") {
		t.Fatalf("text after the block reached the client:\n%s", out)
	}
}

// TestAnthropicPassesAtOnce: events that carry no text that could become a
// match pass byte for byte, at once; a mid-stream error event passes.
func TestAnthropicPassesAtOnce(t *testing.T) {
	s := Default()
	var out bytes.Buffer
	m := s.NewSSE(&out, nil, StreamOptions{Dialect: DialectAnthropic})
	for _, ev := range []string{
		antEvent("message_start", `{"type":"message_start","message":{"id":"msg_1","content":[],"usage":{"input_tokens":1}}}`),
		antEvent("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
		antDelta(0, "text_delta", "text", "Hello there. "),
		antEvent("ping", `{"type": "ping"}`),
		antEvent("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`),
	} {
		before := out.Len()
		if _, err := m.Write([]byte(ev)); err != nil {
			t.Fatal(err)
		}
		if got := out.String()[before:]; got != ev {
			t.Fatalf("event %q came out as %q", ev, got)
		}
	}
}
