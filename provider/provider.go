// Package provider describes the model APIs sessctl stands in front of:
// which provider an intercepted host belongs to, and, for each provider,
// how a runner presents its credential and how the real key replaces it,
// where a request names its model, how its answers report token usage,
// how its streams are walked for masking, and how its errors are shaped.
//
// Everything else in sessctl (host pinning, rules, approvals, records) is
// provider-blind: it asks a [Provider].
package provider

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sessctl/sessctl/rules"
)

// Name names a provider in configuration and records.
type Name string

// The providers sessctl knows.
const (
	// OpenAI is the OpenAI API (api.openai.com).
	OpenAI Name = "openai"
	// Anthropic is the Anthropic API (api.anthropic.com).
	Anthropic Name = "anthropic"
	// AzureOpenAI is Azure OpenAI (*.openai.azure.com).
	AzureOpenAI Name = "azure-openai"
)

// Names returns every provider name.
func Names() []Name { return []Name{OpenAI, Anthropic, AzureOpenAI} }

// Parse returns the provider named s.
func Parse(s string) (Name, error) {
	if n := Name(s); slices.Contains(Names(), n) {
		return n, nil
	}
	return "", fmt.Errorf("unknown provider %q (want one of openai, anthropic, azure-openai)", s)
}

// azureSuffix is the domain of Azure OpenAI resources.
const azureSuffix = ".openai.azure.com"

// ForHost returns the provider of an intercepted host: the one assigned
// to it (host -> provider name, from the providers configuration map),
// else the provider whose public API lives there. A wildcard host
// "*.openai.azure.com" is Azure OpenAI's. It reports false when the host
// has no known provider, or is assigned an unknown one.
func ForHost(host string, assigned map[string]string) (Name, bool) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for h, p := range assigned {
		if strings.TrimSuffix(strings.ToLower(h), ".") == host {
			n, err := Parse(p)
			return n, err == nil
		}
	}
	switch {
	case host == "api.openai.com":
		return OpenAI, true
	case host == "api.anthropic.com":
		return Anthropic, true
	case strings.HasSuffix(host, azureSuffix) && len(host) > len(azureSuffix):
		return AzureOpenAI, true
	}
	return "", false
}

// Provider is the seam between the proxy and one provider's API.
type Provider interface {
	// Name is the provider's name.
	Name() Name
	// KeyEnv is the environment variable from which the proxy reads the
	// provider's real key when no key file is configured.
	KeyEnv() string
	// Forwards reports whether sessctl forwards requests for path to the
	// provider: its model API. Others are refused (and recorded).
	Forwards(path string) bool
	// Credential returns the credential a runner presents in the request
	// headers (a runner token, session token or CI OIDC token), or "".
	Credential(h http.Header) string
	// SetKey removes every credential header a runner may have set and
	// sets the real key the way the provider expects it.
	SetKey(h http.Header, key string)
	// Model returns the model (or deployment) a request asks for, or "".
	Model(r *http.Request, body []byte) string
	// Usage reads the token usage an answer reports: a whole JSON answer,
	// or, with stream set, the text/event-stream answer as relayed.
	Usage(answer []byte, stream bool) Usage
	// WebSocketPath is the one path on which sessctl carries the
	// provider's WebSockets, or "" if it carries none.
	WebSocketPath() string
	// Dialect is how the stream masker walks the provider's streamed
	// events.
	Dialect() rules.Dialect
	// ErrorBody is the provider-shaped JSON error body for a refusal by
	// sessctl: status is its HTTP status, typ and code sessctl's error
	// type and code.
	ErrorBody(status int, typ, code, message string) []byte
}

// Usage is the token usage an answer reports. Zero fields were not
// reported.
type Usage struct {
	// InputTokens counts the prompt's tokens (OpenAI prompt_tokens or
	// input_tokens; Anthropic input_tokens, without cached ones).
	InputTokens int64 `json:"input_tokens,omitempty"`
	// OutputTokens counts the answer's tokens.
	OutputTokens int64 `json:"output_tokens,omitempty"`
	// CacheReadTokens counts prompt tokens read from a prompt cache.
	CacheReadTokens int64 `json:"cache_read_tokens,omitempty"`
	// CacheWriteTokens counts prompt tokens written to a prompt cache
	// (Anthropic's cache_creation_input_tokens).
	CacheWriteTokens int64 `json:"cache_write_tokens,omitempty"`
}

// IsZero reports whether no usage was read.
func (u Usage) IsZero() bool { return u == Usage{} }

// For returns the provider named n; an unknown name gets OpenAI's.
func For(n Name) Provider {
	switch n {
	case Anthropic:
		return anthropic{}
	case AzureOpenAI:
		return azure{}
	}
	return openAI{}
}

// credentialHeaders are every header in which some provider's clients
// send an API credential. SetKey removes them all, whatever the
// provider, so that a runner's token never reaches an upstream.
var credentialHeaders = []string{"Authorization", "X-Api-Key", "Api-Key"}

func stripCredentials(h http.Header) {
	for _, k := range credentialHeaders {
		h.Del(k)
	}
}

// bearer returns the credential of an "Authorization: Bearer" header.
func bearer(h http.Header) string {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(rest)
}
