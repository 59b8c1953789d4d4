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
// the message of a plain JSON answer. It returns "" when it finds none.
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
	return ""
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
	}
	if json.Unmarshal(b, &a) != nil {
		return ""
	}
	if len(a.Choices) > 0 {
		return a.Choices[0].Message.Content
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
