package rules

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzSet is the default ruleset plus rules that exercise the fallback
// scanner, assertions, a secret group and a block.
func fuzzSet(t testing.TB) *Set {
	extra := []Rule{
		{Name: "digits", Pattern: `\d{3}-\d{2}`, Action: Mask},
		{Name: "line", Pattern: `(?m)^pw:(?P<secret>\S+)$`, Action: Mask},
		{Name: "fold", Pattern: `(?i)skey\b`, Action: Mask},
		{Name: "stop", Pattern: `STOP!`, Action: Block},
	}
	cs := append([]*compiled(nil), Default().rules...)
	for _, r := range extra {
		c, err := compile(r)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return newSet(cs)
}

// FuzzMask checks the body masker: JSON stays JSON, the JSON reader agrees
// with encoding/json, and masking a text in two stream pieces gives what
// masking it whole gives.
func FuzzMask(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"user","content":"key `+awsKey+`"}]}`), 10)
	f.Add([]byte(`{"a":"\u0041KIAIOSFODNN7EXAMPLE","b":[1,2.5e3,null,true]}`), 3)
	f.Add([]byte("plain text "+ghTok+" and 123-45 pw:x"), 20)
	f.Add([]byte(fakeTokens["private-key"][0]), 40)
	f.Add([]byte("é😀\xff STOP! sKEY"), 2)
	s := fuzzSet(f)
	f.Fuzz(func(t *testing.T, body []byte, cut int) {
		res := s.Request(body)
		_, ok := scanJSON(body)
		valid := json.Valid(body)
		if ok != valid {
			t.Fatalf("scanJSON = %v, json.Valid = %v", ok, valid)
		}
		if valid && !json.Valid(res.Body) {
			t.Fatalf("masked JSON is not JSON: %q", res.Body)
		}
		if len(res.Hits) == 0 && !bytes.Equal(res.Body, body) {
			t.Fatalf("no hit, but the body changed: %q", res.Body)
		}
		if cut < 0 {
			cut = -cut
		}
		if len(body) > 0 {
			cut %= len(body) + 1
		} else {
			cut = 0
		}
		whole := string(maskWhole(s, body))
		if got := streamPieces(s, [][]byte{body[:cut], body[cut:]}); got != whole && !blocks(s, body) {
			t.Fatalf("split at %d: %q, whole: %q", cut, got, whole)
		}
	})
}

// blocks reports whether a block rule fires on text (a stream then stops).
func blocks(s *Set, text []byte) bool {
	hits := s.resp.find(text, []seg{{0, len(text), 0}})
	for _, h := range hits {
		if s.resp.rules[h.rule].Action != Mask {
			return true
		}
	}
	return false
}

// FuzzSSE checks the SSE masker: it does not panic, and its output does not
// depend on how the input is cut into writes.
func FuzzSSE(f *testing.F) {
	f.Add(chatStream([]string{"key AKIAIOSF", "ODNN7EXAMPLE done"}), uint64(7))
	f.Add(responsesStream([]string{"tok gh", "p_" + alnum36, " ok"}), uint64(3))
	f.Add([]byte(": c\r\n\r\nevent: x\rdata: 1\r\rdata: [DONE]\n\n"), uint64(1))
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"STOP!\"}}]}}]}\n\n"), uint64(5))
	s := fuzzSet(f)
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		checkWriteSplits(t, s, StreamOptions{Holdback: 64, MaxEvent: 1 << 16}, stream, seed)
	})
}

// FuzzAnthropicSSE is FuzzSSE for the Anthropic dialect: the output does
// not depend on how the stream is cut into writes, and every event the
// masker writes for a JSON event is JSON.
func FuzzAnthropicSSE(f *testing.F) {
	f.Add([]byte(antStream(`{"type":"text","text":""}`, "text_delta", "text", []string{"key AKIAIOSF", "ODNN7EXAMPLE done"})), uint64(7))
	f.Add([]byte(antStream(`{"type":"tool_use","id":"t","name":"x","input":{}}`, "input_json_delta", "partial_json", []string{`{"a":"AKIA`, `IOSFODNN7EXAMPLE\\"}`})), uint64(3))
	f.Add([]byte(antStream(`{"type":"thinking","thinking":""}`, "thinking_delta", "thinking", []string{"STOP", "! sKEY"})), uint64(5))
	s := fuzzSet(f)
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		checkWriteSplits(t, s, StreamOptions{Holdback: 64, MaxEvent: 1 << 16, Dialect: DialectAnthropic}, stream, seed)
	})
}

// checkWriteSplits masks stream written whole and in pieces of 1 to 17
// bytes (sizes drawn from seed): both must fail, or give the same output.
func checkWriteSplits(t *testing.T, s *Set, opts StreamOptions, stream []byte, seed uint64) {
	t.Helper()
	run := func(sizes func() int) ([]byte, error) {
		var out bytes.Buffer
		m := s.NewSSE(&out, nil, opts)
		var err error
		for rest := stream; len(rest) > 0 && err == nil; {
			n := min(len(rest), sizes())
			_, err = m.Write(rest[:n])
			rest = rest[n:]
		}
		if err == nil {
			err = m.Close()
		}
		return out.Bytes(), err
	}
	whole, err1 := run(func() int { return len(stream) })
	x := seed | 1
	pieces, err2 := run(func() int {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return 1 + int(x%17)
	})
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("errors differ: %v / %v", err1, err2)
	}
	if err1 == nil && !bytes.Equal(whole, pieces) {
		t.Fatalf("output depends on the writes:\n%q\n%q", whole, pieces)
	}
}

// FuzzStreamSplits splices examples of the default rules (behind the key
// name or URL their rules need) into text, cuts it at random into deltas,
// and checks the stream masker: the text released after every delta is a
// prefix of the text masked whole, so that no value the whole text masks
// reaches the client, even for a moment; and at the end they are equal. It
// checks the same through an SSE stream (chat completions, Responses or
// Anthropic Messages, by seed), with the default holdback, for texts
// shorter than it.
func FuzzStreamSplits(f *testing.F) {
	f.Add([]byte("The build failed because the test expects its old path."), uint64(1), uint64(2))
	f.Add([]byte("aws_secret_access_key = \"x\" and hooks.slack.com/services/ here"), uint64(7), uint64(9))
	f.Add([]byte("pw:abc\nkey 123-45 sKEY é😀"), uint64(3), uint64(4))
	f.Add([]byte(""), uint64(11), uint64(5))
	s := fuzzSet(f)
	cases := defaultSecretCases()
	slices.SortFunc(cases, func(a, b secretCase) int { return strings.Compare(a.text, b.text) })
	f.Fuzz(func(t *testing.T, base []byte, pick, seed uint64) {
		x := seed | 1
		next := func(n int) int {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			return int(x % uint64(n))
		}
		// Up to three secrets, each with the text before it.
		text := append([]byte(nil), base...)
		for k := range 1 + int(pick%3) {
			sc := cases[int(pick/3+uint64(k)*7)%len(cases)]
			at := next(len(text) + 1)
			text = slices.Concat(text[:at], []byte(sc.text), text[at:])
		}
		if blocks(s, text) {
			return
		}
		res := s.Response(text)
		want := string(maskWhole(s, text))
		var pieces [][]byte
		for rest := text; len(rest) > 0; {
			n := min(len(rest), next(24))
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		steps := streamSteps(s, pieces)
		for i, got := range steps {
			if !strings.HasPrefix(want, got) {
				t.Fatalf("pieces %q: after %d released %q, not a prefix of the whole %q", pieces, i, got, want)
			}
			for _, sec := range res.Secrets {
				if !strings.Contains(want, string(sec)) && strings.Contains(got, string(sec)) {
					t.Fatalf("pieces %q: secret %q released", pieces, sec)
				}
			}
		}
		if got := steps[len(steps)-1]; got != want {
			t.Fatalf("pieces %q: released %q, whole %q", pieces, got, want)
		}
		if !utf8.Valid(text) || len(text) >= DefaultHoldback {
			return // JSON deltas carry valid text; a longer one may outgrow the holdback
		}
		// JSON carries whole runes: each cut moves to the next rune start.
		var deltas []string
		carry := ""
		for _, p := range pieces {
			d := carry + string(p)
			n := len(d)
			for n > 0 && !utf8.ValidString(d[:n]) {
				n--
			}
			deltas, carry = append(deltas, d[:n]), d[n:]
		}
		deltas = append(deltas, carry)
		ds := dialectStreams[seed%uint64(len(dialectStreams))]
		var out bytes.Buffer
		m := s.NewSSE(&out, nil, StreamOptions{Dialect: ds.dialect})
		m.Write(ds.render(deltas))
		m.Close()
		if got := ds.text(t, out.Bytes()); got != want {
			t.Fatalf("%s deltas %q: client got %q, whole %q", ds.name, deltas, got, want)
		}
	})
}
