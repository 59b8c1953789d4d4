package proxy

import "testing"

func TestAsksToStream(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"model":"gpt-4o","stream":true}`, true},
		{`{"model":"gpt-4o", "stream" :  true, "n":1}`, true},
		{"{\"stream\":\n\ttrue}", true},
		{`{"model":"gpt-4o","stream":false}`, false},
		{`{"model":"gpt-4o"}`, false},
		{`{"stream_options":{"include_usage":true}}`, false},
		{`{"stream"`, false},
		{`{"tools":[{"parameters":{"properties":{"stream":{"type":"boolean"}}}}],"stream":true}`, true},
		{``, false},
	} {
		if got := asksToStream([]byte(tc.body)); got != tc.want {
			t.Errorf("asksToStream(%q) = %v, want %v", tc.body, got, tc.want)
		}
	}
}
