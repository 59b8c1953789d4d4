package proxy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// outboundHeaderDeleting is outboundHeader as it was written (clone, then
// delete): the result outboundHeader must agree with.
func outboundHeaderDeleting(in http.Header) http.Header {
	h := in.Clone()
	removeHopHeaders(h)
	for _, k := range []string{"Authorization", "X-Api-Key", "Api-Key", "Accept-Encoding", "Content-Length", "Expect", "Openai-Organization", "Openai-Project"} {
		h.Del(k)
	}
	for k := range h {
		if strings.HasPrefix(k, "Sessctl-") {
			h.Del(k)
		}
	}
	return h
}

func TestOutboundHeader(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"empty", http.Header{}, http.Header{}},
		{"kept", http.Header{"Content-Type": {"application/json"}, "User-Agent": {"OpenAI/Python 1.0"}, "X-Stainless-Os": {"Linux"}},
			http.Header{"Content-Type": {"application/json"}, "User-Agent": {"OpenAI/Python 1.0"}, "X-Stainless-Os": {"Linux"}}},
		{"credentials and billing", http.Header{
			"Authorization": {"Bearer sct_x"}, "X-Api-Key": {"k"}, "Api-Key": {"k"}, "Openai-Organization": {"org"},
			"Openai-Project": {"p"}, "Accept": {"*/*"}}, http.Header{"Accept": {"*/*"}}},
		{"hop by hop and named in Connection", http.Header{
			"Connection": {"keep-alive, x-trace-hop", "Upgrade"}, "X-Trace-Hop": {"1"}, "Keep-Alive": {"timeout=5"},
			"Te": {"trailers"}, "Upgrade": {"h2c"}, "Proxy-Authorization": {"Basic x"}, "Transfer-Encoding": {"chunked"},
			"Accept": {"a", "b"}}, http.Header{"Accept": {"a", "b"}}},
		{"sessctl's own, encoding, length, expect", http.Header{
			"Sessctl-Meta-Job": {"42"}, "Sessctl-Trace": {"x"}, "Accept-Encoding": {"gzip"}, "Content-Length": {"12"},
			"Expect": {"100-continue"}, "Openai-Beta": {"assistants=v2"}}, http.Header{"Openai-Beta": {"assistants=v2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := outboundHeader(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("outboundHeader = %v, want %v", got, tt.want)
			}
			if old := outboundHeaderDeleting(tt.in); !reflect.DeepEqual(got, old) {
				t.Fatalf("outboundHeader = %v, the clone-and-delete version gives %v", got, old)
			}
			// The copy is the upstream request's own: changing it leaves
			// the runner's request as it was.
			before := tt.in.Clone()
			for k := range got {
				got[k][0] = "changed"
				got.Add(k, "added")
			}
			if !reflect.DeepEqual(tt.in, before) {
				t.Fatal("changing the outbound header changed the runner's")
			}
		})
	}
}

// BenchmarkOutboundHeader copies the headers of a typical SDK request.
func BenchmarkOutboundHeader(b *testing.B) {
	in := http.Header{
		"Authorization": {"Bearer sct_x"}, "Content-Type": {"application/json"}, "Accept": {"application/json"},
		"User-Agent": {"OpenAI/Python 1.54.0"}, "X-Stainless-Lang": {"python"}, "X-Stainless-Os": {"Linux"},
		"X-Stainless-Arch": {"x64"}, "X-Stainless-Runtime": {"CPython"}, "X-Stainless-Package-Version": {"1.54.0"},
		"X-Stainless-Retry-Count": {"0"}, "Accept-Encoding": {"gzip, deflate"}, "Connection": {"keep-alive"},
		"Content-Length": {"1634"},
	}
	for _, c := range []struct {
		name string
		f    func(http.Header) http.Header
	}{{"one-pass", outboundHeader}, {"clone-delete", outboundHeaderDeleting}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.f(in)
			}
		})
	}
}
