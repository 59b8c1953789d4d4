package usage

import (
	"bytes"
	"encoding/json"

	"github.com/sessctl/sessctl/internal/jsonobj"
	"github.com/sessctl/sessctl/store"
)

// counts is the union of the usage shapes of OpenAI's APIs: chat
// completions and embeddings (prompt_/completion_tokens) and the
// Responses API (input_/output_tokens).
type counts struct {
	PromptTokens     *int64 `json:"prompt_tokens"`
	CompletionTokens *int64 `json:"completion_tokens"`
	InputTokens      *int64 `json:"input_tokens"`
	OutputTokens     *int64 `json:"output_tokens"`
	TotalTokens      *int64 `json:"total_tokens"`
	PromptDetails    *struct {
		Cached int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	InputDetails *struct {
		Cached int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	CompletionDetails *struct {
		Reasoning int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
	OutputDetails *struct {
		Reasoning int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

// parseCounts reads one "usage" object. It reports false for null, for
// anything that is not such an object, and for negative counts.
func parseCounts(raw []byte) (*store.Usage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var c counts
	if json.Unmarshal(raw, &c) != nil {
		return nil, false
	}
	if c.PromptTokens == nil && c.InputTokens == nil && c.TotalTokens == nil &&
		c.CompletionTokens == nil && c.OutputTokens == nil {
		return nil, false
	}
	u := &store.Usage{
		Input:  first(c.PromptTokens, c.InputTokens),
		Output: first(c.CompletionTokens, c.OutputTokens),
		Total:  first(c.TotalTokens),
	}
	if c.PromptDetails != nil {
		u.CachedInput = c.PromptDetails.Cached
	} else if c.InputDetails != nil {
		u.CachedInput = c.InputDetails.Cached
	}
	if c.CompletionDetails != nil {
		u.Reasoning = c.CompletionDetails.Reasoning
	} else if c.OutputDetails != nil {
		u.Reasoning = c.OutputDetails.Reasoning
	}
	if u.Input < 0 || u.Output < 0 || u.Total < 0 || u.CachedInput < 0 || u.Reasoning < 0 {
		return nil, false
	}
	return u, true
}

func first(ps ...*int64) int64 {
	for _, p := range ps {
		if p != nil {
			return *p
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
