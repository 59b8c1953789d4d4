package provider

import (
	"net/http"
	"strings"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/rules"
)

// azure is Azure OpenAI: OpenAI's wire format, with the key in an
// "api-key" header and the model named by a deployment in the path
// (/openai/deployments/{name}/...) or, on the v1 path, by the body.
type azure struct{}

func (azure) Name() Name     { return AzureOpenAI }
func (azure) KeyEnv() string { return "AZURE_OPENAI_API_KEY" }

func (azure) Credential(h http.Header) string {
	if k := strings.TrimSpace(h.Get("Api-Key")); k != "" {
		return k
	}
	return identity.ParseCredential(h.Get("Authorization"))
}

func (azure) SetKey(h http.Header, key string) {
	stripCredentials(h)
	h.Set("Api-Key", key)
}

func (azure) Model(r *http.Request, body []byte) string {
	if r != nil {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/openai/deployments/"); ok {
			if name, _, _ := strings.Cut(rest, "/"); name != "" && len(name) <= 200 {
				return name
			}
		}
	}
	return bodyModel(body)
}

func (azure) Usage(answer []byte, stream bool) Usage { return openAIUsage(answer, stream) }

func (azure) Dialect() rules.Dialect { return rules.DialectOpenAI }

func (azure) ErrorBody(_ int, typ, code, message string) []byte {
	return openAIError(typ, code, message)
}

func (azure) WebSocketPath() string { return "" }

// Forwards: every path (deployments, the v1 path, and the rest of the
// resource's data plane).
func (azure) Forwards(string) bool { return true }
