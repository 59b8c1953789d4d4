package rules

import (
	"bytes"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

// prompt1MB returns a chat request of about 1 MB: prose, code, logs and
// base64, with a few secrets.
func prompt1MB() []byte {
	r := rand.New(rand.NewPCG(11, 12))
	words := strings.Fields(`the task-based risk of a desk skill asks for keys and tokens while
		func main() { fmt.Println("hello") } return err != nil ghost story pypi simple npm install
		2024-05-01T12:00:00Z INFO request id=42 status=200 latency=12ms user=alice path=/v1/chat
		AKIA? no. sk- is a prefix; eyJ starts JSON in base64; -----BEGIN CERTIFICATE----- xoxo hugs`)
	var b strings.Builder
	b.WriteString(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a code reviewer."},{"role":"user","content":"`)
	var text strings.Builder
	for text.Len() < 1<<20 {
		switch r.IntN(200) {
		case 0:
			text.WriteString(awsKey)
		case 1:
			text.WriteString(ghTok)
		case 2:
			for range 40 {
				text.WriteString("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo")
			}
		default:
			text.WriteString(words[r.IntN(len(words))])
		}
		if r.IntN(12) == 0 {
			text.WriteByte('\n')
		} else {
			text.WriteByte(' ')
		}
	}
	b.WriteString(q(text.String())[1 : len(q(text.String()))-1])
	b.WriteString(`"}]}`)
	return []byte(b.String())
}

func BenchmarkRequest1MB(b *testing.B) {
	s := Default()
	body := prompt1MB()
	b.SetBytes(int64(len(body)))
	c0, n := cpuTime(), 0
	for b.Loop() {
		res := s.Request(body)
		if len(res.Hits) == 0 {
			b.Fatal("no hits")
		}
		n++
	}
	reportCPU(b, c0, n, len(body))
}

// reportCPU reports MB per CPU second (all threads of the process, GC
// included).
func reportCPU(b *testing.B, c0 time.Duration, n, size int) {
	if d := cpuTime() - c0; d > 0 && n > 0 {
		b.ReportMetric(float64(n*size)/1e6/d.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkRequest1MBProse masks a 1 MB prompt of plain prose with no
// secret and no near miss: the common case.
func BenchmarkRequest1MBProse(b *testing.B) {
	s := Default()
	words := strings.Fields(`Please review the following change to the deployment pipeline and tell
		me whether the retry logic is correct when the upstream service returns errors under load`)
	var text strings.Builder
	for i := 0; text.Len() < 1<<20; i++ {
		text.WriteString(words[i*7%len(words)])
		if i%9 == 8 {
			text.WriteByte('\n')
		} else {
			text.WriteByte(' ')
		}
	}
	body := []byte(`{"messages":[{"role":"user","content":` + q(text.String()) + `}]}`)
	b.SetBytes(int64(len(body)))
	c0, n := cpuTime(), 0
	for b.Loop() {
		s.Request(body)
		n++
	}
	reportCPU(b, c0, n, len(body))
}

func BenchmarkText1MB(b *testing.B) {
	s := Default()
	body := prompt1MB()
	body = bytes.ReplaceAll(body, []byte(`"`), []byte(` `)) // not JSON
	b.SetBytes(int64(len(body)))
	c0, n := cpuTime(), 0
	for b.Loop() {
		s.Request(body)
		n++
	}
	reportCPU(b, c0, n, len(body))
}

// BenchmarkSSEDelta measures the time from a delta event entering the
// masker to its masked bytes reaching the writer, and reports percentiles.
func BenchmarkSSEDelta(b *testing.B) {
	s := Default()
	words := strings.Fields("Sure, here is how to configure the deployment: first set the key then run the job and check the logs for errors")
	var events [][]byte
	for i := range 512 {
		events = append(events, []byte(chunk(" "+words[i%len(words)])))
	}
	lat := make([]time.Duration, 0, b.N)
	m := s.NewSSE(io.Discard, nil, StreamOptions{})
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ev := events[i%len(events)]
		t0 := time.Now()
		if _, err := m.Write(ev); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
}

// BenchmarkResponsesDelta is BenchmarkSSEDelta for Responses API events.
func BenchmarkResponsesDelta(b *testing.B) {
	s := Default()
	ev := []byte("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" deployment\",\"logprobs\":[],\"sequence_number\":5}\n\n")
	m := s.NewSSE(io.Discard, nil, StreamOptions{})
	for b.Loop() {
		if _, err := m.Write(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubset(b *testing.B) {
	s := Default()
	names := []string{"aws-access-key", "github-token", "jwt", "private-key"}
	for b.Loop() {
		s.Subset(names)
	}
}

// BenchmarkAnthropicDelta is BenchmarkSSEDelta for Anthropic Messages
// text_delta events.
func BenchmarkAnthropicDelta(b *testing.B) {
	s := Default()
	ev := []byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" deployment\"}}\n\n")
	m := s.NewSSE(io.Discard, nil, StreamOptions{Dialect: DialectAnthropic})
	for b.Loop() {
		if _, err := m.Write(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// englishAnswer is an ordinary English answer, as a model streams it: one
// word (with its leading space) per delta.
func englishAnswer() []string {
	text := "The build failed because the integration test expects the fixture file at its old path; " +
		"update the path or restore it. Sure, here is how to configure the deployment: first set the " +
		"environment, then run the job and check the logs for errors. If the service returns a timeout, " +
		"its retry policy should back off; the session ends when the answer is complete, so please " +
		"review the changes, rerun the pipeline and tell me whether the tests pass. " +
		"Secrets such as access keys belong in the secret store, never in the source tree."
	var words []string
	for i, w := range strings.Split(text, " ") {
		if i > 0 {
			w = " " + w
		}
		words = append(words, w)
	}
	return words
}

// BenchmarkSSEEnglish streams an English answer of 93 words, a word
// per delta, through the default rules: one op is the whole answer (every
// delta and the end of the stream).
func BenchmarkSSEEnglish(b *testing.B) {
	s := Default()
	words := englishAnswer()
	var events [][]byte
	for _, w := range words {
		events = append(events, []byte(chunk(w)))
	}
	b.ReportAllocs()
	for b.Loop() {
		m := s.NewSSE(io.Discard, nil, StreamOptions{})
		for _, ev := range events {
			if _, err := m.Write(ev); err != nil {
				b.Fatal(err)
			}
		}
		if err := m.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/delta")
}
