package provider

import (
	"bytes"
	"encoding/json"
	"net/http"
	"unicode/utf8"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/jsonobj"
	"github.com/sessctl/sessctl/rules"
)

// openAI is the OpenAI API: the credential is a bearer token, the model is
// the body's "model".
type openAI struct{}

func (openAI) Name() Name     { return OpenAI }
func (openAI) KeyEnv() string { return "OPENAI_API_KEY" }

func (openAI) Credential(h http.Header) string {
	return identity.ParseCredential(h.Get("Authorization"))
}

func (openAI) SetKey(h http.Header, key string) {
	stripCredentials(h)
	h.Set("Authorization", "Bearer "+key)
}

func (openAI) Model(_ *http.Request, body []byte) string { return bodyModel(body) }

func (openAI) Usage(answer []byte, stream bool) Usage { return openAIUsage(answer, stream) }

func (openAI) Dialect() rules.Dialect { return rules.DialectOpenAI }

func (openAI) ErrorBody(_ int, typ, code, message string) []byte {
	return openAIError(typ, code, message)
}

// openAIError is the error body OpenAI's API and SDKs use.
func openAIError(typ, code, message string) []byte {
	b, _ := json.Marshal(struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}{Error: struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	}{message, typ, nil, code}})
	return append(b, '\n')
}

// bodyModel returns the "model" field of a JSON request body, if any, as
// json.Unmarshal into struct{ Model string } reads it: the last member
// named "model" in any case wins, null is no model, and a body that is
// not valid JSON or whose "model" is neither a string nor null has none.
// It reads the body in one pass, decoding only the model's value.
func bodyModel(body []byte) string {
	var buf [16]jsonobj.Member
	ms, _, err := jsonobj.Members(body, buf[:0])
	if err != nil {
		return ""
	}
	var model []byte
	for _, m := range ms {
		if !m.Fold("model") {
			continue
		}
		switch m.Value[0] {
		case '"':
			model = m.Value
		case 'n':
		default:
			return ""
		}
	}
	if model == nil {
		return ""
	}
	if inner := model[1 : len(model)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		if len(inner) > 200 {
			return ""
		}
		return string(inner)
	}
	var s string
	if json.Unmarshal(model, &s) != nil || len(s) > 200 {
		return ""
	}
	return s
}

// openAIUsageFields is the usage object of chat completions (prompt_,
// completion_tokens) and of the Responses API (input_, output_tokens).
type openAIUsageFields struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	InputTokens         int64 `json:"input_tokens"`
	OutputTokens        int64 `json:"output_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
}

func (f *openAIUsageFields) usage() Usage {
	if f == nil {
		return Usage{}
	}
	return Usage{
		InputTokens:     count(f.PromptTokens) + count(f.InputTokens),
		OutputTokens:    count(f.CompletionTokens) + count(f.OutputTokens),
		CacheReadTokens: count(f.PromptTokensDetails.CachedTokens) + count(f.InputTokensDetails.CachedTokens),
	}
}

// count is a token count as reported, with nonsense (negative, or large
// enough to overflow a sum) read as 0.
func count(n int64) int64 {
	if n < 0 || n > 1<<53 {
		return 0
	}
	return n
}

// openAIUsage reads the usage of a chat completion or a Responses API
// answer; in a stream, the last event that reports usage (a chat chunk
// with stream_options.include_usage, or response.completed).
func openAIUsage(answer []byte, stream bool) Usage {
	var u Usage
	read := func(data []byte) {
		var v struct {
			Usage    *openAIUsageFields `json:"usage"`
			Response struct {
				Usage *openAIUsageFields `json:"usage"`
			} `json:"response"`
		}
		if json.Unmarshal(data, &v) != nil {
			return
		}
		if got := v.Usage.usage(); !got.IsZero() {
			u = got
		}
		if got := v.Response.Usage.usage(); !got.IsZero() {
			u = got
		}
	}
	if !stream {
		read(answer)
		return u
	}
	eachData(answer, read)
	return u
}

// eachData calls f with the data of each event of a text/event-stream.
func eachData(stream []byte, f func(data []byte)) {
	var data []byte
	has := false
	end := func() {
		if has {
			f(data)
		}
		data, has = data[:0], false
	}
	for _, line := range bytes.Split(stream, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			end()
			continue
		}
		v, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		v = bytes.TrimPrefix(v, []byte(" "))
		if has {
			data = append(data, '\n')
		}
		data = append(data, v...)
		has = true
	}
	end()
}

// WebSocketPath is the Responses API's WebSocket transport.
func (openAI) WebSocketPath() string { return "/v1/responses" }

// Forwards: every path of api.openai.com, as before sessctl knew other
// providers.
func (openAI) Forwards(string) bool { return true }
