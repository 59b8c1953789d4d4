package usage

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/sessctl/sessctl/store"
)

// fromJSONDecoding is FromJSON as it was written with json.Unmarshal: the
// reading FromJSON must agree with.
func fromJSONDecoding(b []byte) (*store.Usage, bool) {
	if !hasUsageObject(b) {
		return nil, false
	}
	var v struct {
		Usage    json.RawMessage `json:"usage"`
		Response *struct {
			Usage json.RawMessage `json:"usage"`
		} `json:"response"`
	}
	if json.Unmarshal(b, &v) != nil {
		return nil, false
	}
	if u, ok := parseCountsDecoding(v.Usage); ok {
		return u, true
	}
	if v.Response != nil {
		return parseCountsDecoding(v.Response.Usage)
	}
	return nil, false
}

// parseCountsDecoding is parseCounts as it was written with
// json.Unmarshal: the reading parseCounts must agree with.
func parseCountsDecoding(raw []byte) (*store.Usage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var c struct {
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
	if json.Unmarshal(raw, &c) != nil {
		return nil, false
	}
	if c.PromptTokens == nil && c.InputTokens == nil && c.TotalTokens == nil &&
		c.CompletionTokens == nil && c.OutputTokens == nil {
		return nil, false
	}
	firstOf := func(ps ...*int64) int64 {
		for _, p := range ps {
			if p != nil {
				return *p
			}
		}
		return 0
	}
	u := &store.Usage{
		Input:  firstOf(c.PromptTokens, c.InputTokens),
		Output: firstOf(c.CompletionTokens, c.OutputTokens),
		Total:  firstOf(c.TotalTokens),
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

var countsCases = []string{
	`{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":3}}`,
	`{"input_tokens":36,"input_tokens_details":{"cached_tokens":2},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}`,
	`{"prompt_tokens":1,"prompt_tokens":null}`, `{"prompt_tokens":null,"total_tokens":3}`,
	`{"PROMPT_TOKENS":5}`, "{\"total_to\u212aens\":7}", `{"prompt_tokens":1.0}`, `{"prompt_tokens":1e2}`,
	`{"prompt_tokens":-0}`, `{"prompt_tokens":9223372036854775807}`, `{"prompt_tokens":9223372036854775808}`,
	`{"prompt_tokens":-9223372036854775808}`, `{"prompt_tokens":-9223372036854775809}`, `{"prompt_tokens":"5"}`,
	`{"prompt_tokens":true}`, `{"prompt_tokens":[1]}`, `{"prompt_tokens":{}}`,
	`{"total_tokens":1,"prompt_tokens_details":null}`, `{"total_tokens":1,"prompt_tokens_details":"x"}`,
	`{"total_tokens":1,"prompt_tokens_details":{"cached_tokens":2},"prompt_tokens_details":{"audio":1}}`,
	`{"total_tokens":1,"prompt_tokens_details":{"cached_tokens":2},"prompt_tokens_details":null,"prompt_tokens_details":{}}`,
	`{"total_tokens":1,"prompt_tokens_details":{"cached_tokens":null}}`, `{"total_tokens":1,"prompt_tokens_details":{"cached_tokens":1.5}}`,
	`{"total_tokens":1,"input_tokens_details":{"cached_tokens":-2}}`, `{"total_tokens":1,"completion_tokens_details":{"reasoning_tokens":3,"reasoning_tokens":4}}`,
	`{"total_tokens":1,"output_tokens_details":{"Reasoning_Tokens":5}}`, `{}`, `null`, `{"prompt_tokens":1} x`,
}

func TestParseCountsAgreesWithDecoding(t *testing.T) {
	for _, c := range countsCases {
		agreeCounts(t, []byte(c))
	}
}

func agreeCounts(t *testing.T, b []byte) {
	t.Helper()
	got, ok := parseCounts(b)
	want, wantOK := parseCountsDecoding(b)
	if ok != wantOK || (ok && *got != *want) {
		t.Fatalf("parseCounts(%q) = %+v, %v; decoding gives %+v, %v", b, got, ok, want, wantOK)
	}
}

func FuzzParseCounts(f *testing.F) {
	for _, c := range countsCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { agreeCounts(t, b) })
}

var usageCases = []string{
	`{"usage":{"prompt_tokens":1}}`,
	`{"USAGE":{"prompt_tokens":1}}`,
	`{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}`,
	`{"usage":{"prompt_tokens":1},"usage":null}`,
	`{"response":{"usage":{"input_tokens":3}}}`,
	`{"response":{"usage":{"input_tokens":3}},"response":null}`,
	`{"response":{"usage":{"input_tokens":3}},"response":{"id":"x"}}`,
	`{"response":{"usage":{"input_tokens":3}},"response":"x"}`,
	`{"response":[1],"usage":{"prompt_tokens":1}}`,
	`{"Response":{"Usage":{"input_tokens":3}}}`,
	`{"usage":{"prompt_tokens":1}} x`,
	`[{"usage":{"prompt_tokens":1}}]`,
	`{"r\u0065sponse":{"usag\u0065":{"input_tokens":4}}}`,
	`{"usage":{"prompt_tokens":1,"prompt_tokens":-3}}`,
	`{"response":null,"response":{"usage":{"output_tokens":9}}}`,
}

func TestFromJSONAgreesWithDecoding(t *testing.T) {
	for _, c := range usageCases {
		agreeUsage(t, []byte(c))
	}
}

func agreeUsage(t *testing.T, b []byte) {
	t.Helper()
	got, ok := FromJSON(b)
	want, wantOK := fromJSONDecoding(b)
	if ok != wantOK || (ok && *got != *want) {
		t.Fatalf("FromJSON(%q) = %+v, %v; decoding gives %+v, %v", b, got, ok, want, wantOK)
	}
}

func FuzzFromJSON(f *testing.F) {
	for _, c := range usageCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { agreeUsage(t, b) })
}

// BenchmarkFromJSON reads the usage of a whole chat completion answer.
func BenchmarkFromJSON(b *testing.B) {
	answer := []byte(`{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"The build failed because the integration test expects the fixture file testdata/config.yaml, which the refactor moved to testdata/configs/default.yaml. Update the path in TestLoadConfig, or restore the old location with a symlink.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":412,"completion_tokens":52,"total_tokens":464,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_06737a9306"}`)
	for _, c := range []struct {
		name string
		f    func([]byte) (*store.Usage, bool)
	}{{"scan", FromJSON}, {"decoding", fromJSONDecoding}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, ok := c.f(answer); !ok {
					b.Fatal("no usage")
				}
			}
		})
	}
}
