package usage

import (
	"io"
	"strings"
	"testing"
)

// BenchmarkStream measures reading usage from a chat completion stream of
// 500 chunks with include_usage, stripping what sessctl added.
func BenchmarkStream(b *testing.B) {
	var sb strings.Builder
	chunk := "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"},\"finish_reason\":null}],\"usage\":null}\n\n"
	for i := 0; i < 500; i++ {
		sb.WriteString(chunk)
	}
	sb.WriteString("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":500,\"total_tokens\":509}}\n\ndata: [DONE]\n\n")
	in := []byte(sb.String())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s := NewStream(io.Discard, true, 1<<20)
		for p := in; len(p) > 0; {
			n := min(len(p), 180) // about one chunk per read, as from the network
			s.Write(p[:n])
			p = p[n:]
		}
		s.Close()
		if s.Usage() == nil {
			b.Fatal("no usage")
		}
	}
}
