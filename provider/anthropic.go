package provider

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/rules"
)

// anthropic is the Anthropic API. Runners present their credential in
// "x-api-key" (Claude Code with ANTHROPIC_API_KEY) or as a bearer token
// (the Node SDK, Claude Code with ANTHROPIC_AUTH_TOKEN); the real key goes
// upstream in "x-api-key".
type anthropic struct{}

func (anthropic) Name() Name     { return Anthropic }
func (anthropic) KeyEnv() string { return "ANTHROPIC_API_KEY" }

func (anthropic) Credential(h http.Header) string {
	if k := strings.TrimSpace(h.Get("X-Api-Key")); k != "" {
		return k
	}
	return identity.ParseCredential(h.Get("Authorization"))
}

func (anthropic) SetKey(h http.Header, key string) {
	stripCredentials(h)
	h.Set("X-Api-Key", key)
}

func (anthropic) Model(_ *http.Request, body []byte) string { return bodyModel(body) }

func (anthropic) Dialect() rules.Dialect { return rules.DialectAnthropic }

// ErrorBody shapes a refusal as Anthropic's API does, so that the SDKs and
// Claude Code show its message: {"type":"error","error":{"type","message"}}.
// The error type follows the status, as Anthropic's do; sessctl's own
// type and code are kept in extra members.
func (anthropic) ErrorBody(status int, typ, code, message string) []byte {
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error struct {
			Type        string `json:"type"`
			Message     string `json:"message"`
			SessctlType string `json:"sessctl_type,omitempty"`
			SessctlCode string `json:"sessctl_code,omitempty"`
		} `json:"error"`
	}{Type: "error", Error: struct {
		Type        string `json:"type"`
		Message     string `json:"message"`
		SessctlType string `json:"sessctl_type,omitempty"`
		SessctlCode string `json:"sessctl_code,omitempty"`
	}{AnthropicErrorType(status), message, typ, code}})
	return append(b, '\n')
}

// AnthropicErrorType is the Anthropic error type for an HTTP status.
func AnthropicErrorType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusRequestTimeout:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden, http.StatusMisdirectedRequest:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	}
	return "api_error"
}

// anthropicUsageFields is the usage object of a message.
type anthropicUsageFields struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// merge keeps the larger of each count: a stream's message_delta carries
// cumulative counts, message_start the first ones.
func (u *Usage) merge(f *anthropicUsageFields) {
	if f == nil {
		return
	}
	u.InputTokens = max(u.InputTokens, count(f.InputTokens))
	u.OutputTokens = max(u.OutputTokens, count(f.OutputTokens))
	u.CacheWriteTokens = max(u.CacheWriteTokens, count(f.CacheCreationInputTokens))
	u.CacheReadTokens = max(u.CacheReadTokens, count(f.CacheReadInputTokens))
}

// Usage reads a message's usage (and count_tokens' input_tokens); in a
// stream, message_start's and message_delta's.
func (anthropic) Usage(answer []byte, stream bool) Usage {
	var u Usage
	read := func(data []byte) {
		var v struct {
			Usage       *anthropicUsageFields `json:"usage"`
			InputTokens int64                 `json:"input_tokens"`
			Message     struct {
				Usage *anthropicUsageFields `json:"usage"`
			} `json:"message"`
		}
		if json.Unmarshal(data, &v) != nil {
			return
		}
		u.merge(v.Usage)
		u.merge(v.Message.Usage)
		u.InputTokens = max(u.InputTokens, count(v.InputTokens))
	}
	if !stream {
		read(answer)
		return u
	}
	eachData(answer, read)
	return u
}

func (anthropic) WebSocketPath() string { return "" }

// Forwards only the model API, /v1/...: messages, count_tokens, models,
// batches, files. Claude Code also calls api.anthropic.com/api/...
// (settings, policy limits, bootstrap, event logging) with the runner's
// credential: sessctl refuses those with an Anthropic-shaped 403, which
// Claude Code tolerates, rather than send them the real key (and
// telemetry out of the pipeline).
func (anthropic) Forwards(path string) bool { return strings.HasPrefix(path, "/v1/") }
