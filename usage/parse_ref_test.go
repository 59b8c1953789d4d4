package usage

import (
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
	if u, ok := parseCounts(v.Usage); ok {
		return u, true
	}
	if v.Response != nil {
		return parseCounts(v.Response.Usage)
	}
	return nil, false
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
