package usage

import (
	"bytes"

	"github.com/sessctl/sessctl/internal/jsonobj"
	"github.com/sessctl/sessctl/store"
)

// counts is the union of the usage shapes of OpenAI's APIs: chat
// completions and embeddings (prompt_/completion_tokens) and the
// Responses API (input_/output_tokens); each details field is the count
// inside prompt_tokens_details and the like.
type counts struct {
	prompt, completion, input, output, total optCount
	promptDetails, inputDetails              optCount // cached_tokens
	completionDetails, outputDetails         optCount // reasoning_tokens
}

// optCount is a count that may be absent: an *int64 field (or a pointer
// to a details struct) as json.Unmarshal fills it.
type optCount struct {
	n   int64
	set bool
}

// readCounts reads the "usage" object raw into c as json.Unmarshal reads
// it into
//
//	struct {
//		PromptTokens, CompletionTokens, InputTokens, OutputTokens, TotalTokens *int64
//		PromptDetails, InputDetails *struct{ Cached int64 }      // *_tokens_details.cached_tokens
//		CompletionDetails, OutputDetails *struct{ Reasoning int64 } // *_tokens_details.reasoning_tokens
//	}
//
// (snake_case names), in one pass: names match case-insensitively, the
// last of duplicates wins (null unsets; details objects merge), and a
// count that is not an integer in int64, or a details member that is
// neither an object nor null, fails the whole read.
func readCounts(raw []byte, c *counts) bool {
	var buf [16]jsonobj.Member
	ms, _, err := jsonobj.Members(raw, buf[:0])
	if err != nil {
		return false
	}
	for _, m := range ms {
		var ok bool
		switch {
		case m.Fold("prompt_tokens"):
			ok = setCount(&c.prompt, m.Value)
		case m.Fold("completion_tokens"):
			ok = setCount(&c.completion, m.Value)
		case m.Fold("input_tokens"):
			ok = setCount(&c.input, m.Value)
		case m.Fold("output_tokens"):
			ok = setCount(&c.output, m.Value)
		case m.Fold("total_tokens"):
			ok = setCount(&c.total, m.Value)
		case m.Fold("prompt_tokens_details"):
			ok = setDetails(&c.promptDetails, m.Value, "cached_tokens")
		case m.Fold("input_tokens_details"):
			ok = setDetails(&c.inputDetails, m.Value, "cached_tokens")
		case m.Fold("completion_tokens_details"):
			ok = setDetails(&c.completionDetails, m.Value, "reasoning_tokens")
		case m.Fold("output_tokens_details"):
			ok = setDetails(&c.outputDetails, m.Value, "reasoning_tokens")
		default:
			ok = true
		}
		if !ok {
			return false
		}
	}
	return true
}

// setCount sets an *int64 field from its JSON value: null unsets it.
func setCount(c *optCount, v []byte) bool {
	if v[0] == 'n' {
		*c = optCount{}
		return true
	}
	n, ok := parseInt(v)
	if !ok {
		return false
	}
	*c = optCount{n: n, set: true}
	return true
}

// setDetails sets a pointer to a details struct holding one int64 field
// named field: null unsets it, an object sets it (merging with what an
// earlier member set).
func setDetails(c *optCount, v []byte, field string) bool {
	switch v[0] {
	case 'n':
		*c = optCount{}
		return true
	case '{':
	default:
		return false
	}
	var buf [8]jsonobj.Member
	ms, _, err := jsonobj.Members(v, buf[:0])
	if err != nil {
		return false
	}
	c.set = true
	for _, m := range ms {
		if !m.Fold(field) || m.Value[0] == 'n' {
			// A null int64 is left as it was.
			continue
		}
		n, ok := parseInt(m.Value)
		if !ok {
			return false
		}
		c.n = n
	}
	return true
}

// parseInt reads a JSON number as an int64 the way encoding/json does
// (strconv.ParseInt): an integer in range, no fraction or exponent.
func parseInt(v []byte) (int64, bool) {
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	if len(v) == 0 {
		return 0, false
	}
	var u uint64
	for _, d := range v {
		if d < '0' || d > '9' {
			return 0, false
		}
		if u > (1<<63)/10 {
			return 0, false
		}
		u = u*10 + uint64(d-'0')
		if u > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(u), true // -(1<<63) wraps to itself: MinInt64
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// parseCounts reads one "usage" object. It reports false for null, for
// anything that is not such an object, and for negative counts.
func parseCounts(raw []byte) (*store.Usage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var c counts
	if !readCounts(raw, &c) {
		return nil, false
	}
	if !c.prompt.set && !c.input.set && !c.total.set && !c.completion.set && !c.output.set {
		return nil, false
	}
	u := &store.Usage{
		Input:  first(c.prompt, c.input),
		Output: first(c.completion, c.output),
		Total:  first(c.total),
	}
	u.CachedInput = first(c.promptDetails, c.inputDetails)
	u.Reasoning = first(c.completionDetails, c.outputDetails)
	if u.Input < 0 || u.Output < 0 || u.Total < 0 || u.CachedInput < 0 || u.Reasoning < 0 {
		return nil, false
	}
	return u, true
}

// first returns the first count that is set, or 0.
func first(cs ...optCount) int64 {
	for _, c := range cs {
		if c.set {
			return c.n
		}
	}
	return 0
}

// FromJSON returns the usage a JSON answer or event reports: its
// top-level "usage" (chat completions, a chat completion chunk,
// embeddings, a Responses API response), or the "usage" of its "response"
// object (Responses API events: response.completed, response.incomplete,
// response.failed). It reports false when there is none.
func FromJSON(b []byte) (*store.Usage, bool) {
	if !hasUsageObject(b) {
		return nil, false
	}
	top, response, ok := usageMembers(b)
	if !ok {
		return nil, false
	}
	if u, ok := parseCounts(top); ok {
		return u, true
	}
	if response != nil {
		return parseCounts(response)
	}
	return nil, false
}

// usageMembers reads b as json.Unmarshal would read it into
//
//	struct {
//		Usage    json.RawMessage `json:"usage"`
//		Response *struct{ Usage json.RawMessage `json:"usage"` } `json:"response"`
//	}
//
// in one pass, without decoding: names match case-insensitively, the last
// of duplicates wins (a "response": null forgets earlier ones, and the
// members of several "response" objects merge), and a "response" that is
// neither an object nor null fails the whole read. response is nil when
// there is no "response" object, and empty when it has no "usage".
func usageMembers(b []byte) (top, response []byte, ok bool) {
	var buf [16]jsonobj.Member
	ms, _, err := jsonobj.Members(b, buf[:0])
	if err != nil {
		return nil, nil, false
	}
	hasResponse := false
	for _, m := range ms {
		switch {
		case m.Fold("usage"):
			top = m.Value
		case m.Fold("response"):
			switch m.Value[0] {
			case 'n':
				hasResponse, response = false, nil
			case '{':
				var ibuf [16]jsonobj.Member
				inner, _, err := jsonobj.Members(m.Value, ibuf[:0])
				if err != nil {
					return nil, nil, false
				}
				if !hasResponse {
					hasResponse, response = true, []byte{}
				}
				for _, im := range inner {
					if im.Fold("usage") {
						response = im.Value
					}
				}
			default:
				return nil, nil, false
			}
		}
	}
	if !hasResponse {
		response = nil
	}
	return top, response, true
}

// hasUsageObject reports whether b may hold a "usage" member whose value
// is an object: "usage", optional space, a colon, optional space, "{".
// Most stream events have none or "usage": null, and skip the decoding.
func hasUsageObject(b []byte) bool {
	for {
		i := bytes.Index(b, []byte(`"usage"`))
		if i < 0 {
			return false
		}
		b = b[i+len(`"usage"`):]
		rest := bytes.TrimLeft(b, " \t\r\n")
		if len(rest) > 0 && rest[0] == ':' {
			if rest = bytes.TrimLeft(rest[1:], " \t\r\n"); len(rest) > 0 && rest[0] == '{' {
				return true
			}
		}
	}
}
