package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/store"
)

// maskedSpan finds the replacement text of a masking rule, as the rules
// package writes it by default ("[MASKED:<rule>]").
var maskedSpan = regexp.MustCompile(`\[MASKED:[^\]\s]{0,200}\]`)

// segment is a piece of recorded text; Masked marks a masking rule's
// replacement, which pages highlight.
type segment struct {
	Text   string
	Masked bool
}

// segments splits s around masked spans. The template prints each
// segment's Text, escaped, so no recorded byte is ever trusted as HTML.
func segments(s string) []segment {
	var out []segment
	last := 0
	for _, m := range maskedSpan.FindAllStringIndex(s, -1) {
		if m[0] > last {
			out = append(out, segment{Text: s[last:m[0]]})
		}
		out = append(out, segment{Text: s[m[0]:m[1]], Masked: true})
		last = m[1]
	}
	if last < len(s) {
		out = append(out, segment{Text: s[last:]})
	}
	return out
}

// prettyBody indents a JSON body for reading; anything else is returned
// as it is.
func prettyBody(b []byte) string {
	var buf bytes.Buffer
	if json.Valid(b) && json.Indent(&buf, b, "", "  ") == nil {
		return buf.String()
	}
	return string(b)
}

// answerText extracts the assistant's text from a recorded answer: the
// content deltas of a streamed chat completion or Responses API stream, or
// the message of a plain JSON answer; for Anthropic's Messages API (as a
// stream or whole), every content block, thinking and tool calls labelled
// as such. It returns "" when it finds none.
func answerText(b []byte) string {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return jsonAnswerText(t)
	}
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		out.WriteString(deltaText([]byte(strings.TrimSpace(data))))
	}
	return out.String()
}

// deltaText returns the text a streamed event adds.
func deltaText(data []byte) string {
	var ev struct {
		Type    string `json:"type"`
		Delta   any    `json:"delta"`
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
		// Anthropic Messages events.
		Index        int          `json:"index"`
		ContentBlock contentBlock `json:"content_block"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return ""
	}
	if len(ev.Choices) > 0 {
		return ev.Choices[0].Delta.Content
	}
	if s, ok := ev.Delta.(string); ok && strings.HasSuffix(ev.Type, ".delta") {
		return s
	}
	switch ev.Type {
	case "content_block_start":
		sep := ""
		if ev.Index > 0 {
			sep = "\n\n"
		}
		return sep + ev.ContentBlock.label()
	case "content_block_delta":
		d, _ := ev.Delta.(map[string]any)
		for _, f := range []string{"text", "thinking", "partial_json"} {
			if s, ok := d[f].(string); ok {
				return s
			}
		}
	}
	return ""
}

// contentBlock is a block of an Anthropic message.
type contentBlock struct {
	Type     string          `json:"type"`
	Text     string          `json:"text"`
	Thinking string          `json:"thinking"`
	Name     string          `json:"name"`
	Input    json.RawMessage `json:"input"`
}

// label is what the answer text shows at the start of a block: thinking
// and tool calls are marked as such.
func (b contentBlock) label() string {
	switch b.Type {
	case "thinking":
		return "[thinking] "
	case "redacted_thinking":
		return "[redacted thinking]"
	case "tool_use", "server_tool_use":
		return "[tool call " + b.Name + "] "
	}
	return ""
}

// text is the whole block as the answer text shows it.
func (b contentBlock) text() string {
	switch b.Type {
	case "thinking":
		return b.label() + b.Thinking
	case "tool_use", "server_tool_use":
		return b.label() + string(b.Input)
	}
	return b.label() + b.Text
}

// jsonAnswerText returns the message of a non-streamed answer.
func jsonAnswerText(b []byte) string {
	var a struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		OutputText string `json:"output_text"`
		// An Anthropic message.
		Content []contentBlock `json:"content"`
	}
	if json.Unmarshal(b, &a) != nil {
		return ""
	}
	if len(a.Choices) > 0 {
		return a.Choices[0].Message.Content
	}
	if len(a.Content) > 0 {
		parts := make([]string, len(a.Content))
		for i, c := range a.Content {
			parts[i] = c.text()
		}
		return strings.Join(parts, "\n\n")
	}
	return a.OutputText
}

// caller names the person or machine behind a record: the runner, else
// the CI actor, else the OIDC subject.
func caller(id store.Identity) string {
	return (&identity.Identity{Runner: id.Runner, Subject: id.Subject, Claims: id.Claims}).Caller()
}

// claimOf returns the first non-empty claim among names.
func claimOf(id *store.Identity, names ...string) string {
	return id.Claim(names...)
}
