package proxy

import (
	"bytes"
	"encoding/json"
)

// usage is what an answer says about itself: model, id and token counts.
// Nothing of its text.
type usage struct {
	Model, ID string
	In, Out   int64
}

func (u usage) known() bool { return u.Model != "" || u.ID != "" || u.In > 0 || u.Out > 0 }

// usageFields are the fields read from one JSON answer or stream event:
// OpenAI chat completions (prompt_tokens, completion_tokens), the
// Responses API and Anthropic (input_tokens, output_tokens; nested under
// "response" or "message" in stream events).
type usageFields struct {
	ID    string `json:"id"`
	Model string `json:"model"`
	Usage *struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		InputTokens      int64 `json:"input_tokens"`
		OutputTokens     int64 `json:"output_tokens"`
	} `json:"usage"`
}

type usageEvent struct {
	usageFields
	Response *usageFields `json:"response"`
	Message  *usageFields `json:"message"`
}

// usageOf reads usage from an answer: one JSON object, JSON objects one
// after another (a WebSocket's events), or a server-sent event stream;
// later events refine what earlier ones said.
func usageOf(answer []byte) usage {
	var u usage
	answer = bytes.TrimSpace(answer)
	if len(answer) == 0 {
		return u
	}
	if answer[0] == '{' {
		// One JSON answer, or a WebSocket's events one after another.
		dec := json.NewDecoder(bytes.NewReader(answer))
		for {
			var raw json.RawMessage
			if dec.Decode(&raw) != nil {
				return u
			}
			u.add(raw)
		}
	}
	for line := range bytes.Lines(answer) {
		data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:"))
		if !ok {
			continue
		}
		if data = bytes.TrimSpace(data); len(data) > 0 && data[0] == '{' {
			u.add(data)
		}
	}
	return u
}

// add merges what one JSON object says.
func (u *usage) add(data []byte) {
	var ev usageEvent
	if json.Unmarshal(data, &ev) != nil {
		return
	}
	for _, f := range []*usageFields{&ev.usageFields, ev.Response, ev.Message} {
		if f == nil {
			continue
		}
		if f.ID != "" && u.ID == "" {
			u.ID = f.ID
		}
		if f.Model != "" {
			u.Model = f.Model
		}
		if f.Usage != nil {
			if in := f.Usage.PromptTokens + f.Usage.InputTokens; in > 0 {
				u.In = in
			}
			if out := f.Usage.CompletionTokens + f.Usage.OutputTokens; out > 0 {
				u.Out = out
			}
		}
	}
}
