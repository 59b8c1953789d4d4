package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func chunk(content string) string {
	return `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + q(content) + `},"finish_reason":null}]}` + "\n\n"
}

// TestSSEPassesAtOnce checks that a delta that cannot begin a match is
// written, byte for byte, by the Write that brings it, and that a delta
// ending in what could begin a secret is shortened, then completed.
func TestSSEPassesAtOnce(t *testing.T) {
	s := Default()
	var out bytes.Buffer
	flushes := 0
	m := s.NewSSE(&out, func() { flushes++ }, StreamOptions{})
	first := chunk("Hello, world. ")
	if _, err := m.Write([]byte(first)); err != nil {
		t.Fatal(err)
	}
	if out.String() != first || flushes != 1 {
		t.Fatalf("after a plain delta: out %q, flushes %d", out.String(), flushes)
	}
	out.Reset()
	m.Write([]byte(chunk("My token: gh")))
	if want := chunk("My token: "); out.String() != want {
		t.Fatalf("a delta ending in a literal prefix: out %q, want %q", out.String(), want)
	}
	out.Reset()
	m.Write([]byte(chunk("ost story.")))
	if want := chunk("ghost story."); out.String() != want {
		t.Fatalf("the held tail was not released: out %q, want %q", out.String(), want)
	}
	out.Reset()
	// Comments, events without data and unknown JSON pass unchanged.
	other := ": keep-alive\n\nevent: ping\n\nid: 7\nretry: 100\ndata: {\"type\":\"custom\",\"n\":1}\n\n"
	m.Write([]byte(other))
	if out.String() != other {
		t.Fatalf("passthrough: out %q, want %q", out.String(), other)
	}
	// Nothing arrives for an incomplete event.
	out.Reset()
	m.Write([]byte("data: {\"choices\""))
	if out.Len() != 0 {
		t.Fatalf("an incomplete event was written: %q", out.String())
	}
}

// TestSSEHoldbackBound checks that a partial match longer than the bound is
// not held for ever.
func TestSSEHoldbackBound(t *testing.T) {
	s := mustSet(t, Rule{Name: "long", Pattern: `BEGIN[a-z]*END`, Action: Mask})
	var out bytes.Buffer
	m := s.NewSSE(&out, nil, StreamOptions{Holdback: 32})
	m.Write([]byte(chunk("BEGIN")))
	for range 100 {
		m.Write([]byte(chunk("abcdefgh")))
	}
	text := joinChat(t, parseSSE(t, out.Bytes()))
	if len(text) < 5+800-32-8 {
		t.Fatalf("held back %d bytes with a bound of 32", 805-len(text))
	}
	// A rule may ask for more.
	s = mustSet(t, Rule{Name: "long", Pattern: `BEGIN[a-z]*END`, Action: Mask, Holdback: 4096})
	out.Reset()
	m = s.NewSSE(&out, nil, StreamOptions{Holdback: 32})
	m.Write([]byte(chunk("BEGIN")))
	for range 100 {
		m.Write([]byte(chunk("abcdefgh")))
	}
	m.Write([]byte(chunk("END tail")))
	m.Close()
	if got := joinChat(t, parseSSE(t, out.Bytes())); got != "[MASKED:long] tail" {
		t.Fatalf("with a rule holdback: %q", got)
	}
}

func TestSSEBlock(t *testing.T) {
	s := mustSet(t,
		Rule{Name: "no-drop", Pattern: `(?i)drop\s+table`, Action: Block, Scope: []string{ScopeResponse}, Message: "no SQL"},
		Rule{Name: "key", Pattern: `KEY-[0-9]+`, Action: Mask},
	)
	var out bytes.Buffer
	m := s.NewSSE(&out, nil, StreamOptions{})
	if _, err := m.Write([]byte(chunk("Run: DROP "))); err != nil {
		t.Fatal(err)
	}
	_, err := m.Write([]byte(chunk("TABLE users; and KEY-1")))
	if !errors.Is(err, ErrBlocked) {
		t.Fatalf("Write = %v, want ErrBlocked", err)
	}
	if _, err := m.Write([]byte(chunk("more"))); !errors.Is(err, ErrBlocked) {
		t.Fatalf("Write after block = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close after block = %v", err)
	}
	if b := m.Blocked(); b == nil || b.Name != "no-drop" {
		t.Fatalf("Blocked = %v", b)
	}
	evs := parseSSE(t, out.Bytes())
	last := evs[len(evs)-1]
	if last.name != "error" {
		t.Fatalf("last event %+v", last)
	}
	if strings.Contains(out.String(), "TABLE") || strings.Contains(out.String(), "more") {
		t.Fatalf("text after the block reached the client: %q", out.String())
	}
	want := `{"type":"error","error":{"message":"sessctl: answer blocked by rule \"no-drop\": no SQL","type":"sessctl_policy_violation","param":null,"code":"no-drop"},"code":"no-drop","message":"sessctl: answer blocked by rule \"no-drop\": no SQL","param":null}`
	if last.data != want {
		t.Fatalf("error event\n%s\nwant\n%s", last.data, want)
	}
	res := m.Result()
	if res.Block != nil && res.Block.Name != "no-drop" || !fired(res, "no-drop") {
		t.Fatalf("result %+v", res)
	}
}

// TestSSEFraming checks the SSE parser: CRLF and CR line ends, "data:"
// without a space, multi-line data, an event split across writes at every
// byte, and a last event without its blank line.
func TestSSEFraming(t *testing.T) {
	s := Default()
	secret := awsKey
	streams := []string{
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"k " + secret + "\"}}]}\r\n\r\n",
		"data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"k " + secret + "\"}}]}\r\r",
		"data: {\"choices\":[{\"index\":0,\n" + "data: \"delta\":{\"content\":\"k " + secret + "\"}}]}\n\n",
		"event: x\nid: 1\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"k " + secret + "\"}}]}\n\n",
		"data: k " + secret + " as text\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"k " + secret + "\"}}]}", // no blank line: flushed at Close
	}
	for _, stream := range streams {
		var whole bytes.Buffer
		m := s.NewSSE(&whole, nil, StreamOptions{})
		m.Write([]byte(stream))
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(whole.String(), secret) || !strings.Contains(whole.String(), "[MASKED:aws-access-key]") {
			t.Fatalf("%q -> %q", stream, whole.String())
		}
		for i := 1; i < len(stream); i++ {
			var out bytes.Buffer
			m := s.NewSSE(&out, nil, StreamOptions{})
			m.Write([]byte(stream[:i]))
			m.Write([]byte(stream[i:]))
			m.Close()
			if out.String() != whole.String() {
				t.Fatalf("%q split at %d:\n%q\nwant\n%q", stream, i, out.String(), whole.String())
			}
		}
	}
}

func TestSSECloseReleasesTail(t *testing.T) {
	s := Default()
	var out bytes.Buffer
	m := s.NewSSE(&out, nil, StreamOptions{})
	m.Write([]byte(chunk("the end is ey")))
	if got := joinChat(t, parseSSE(t, out.Bytes())); got != "the end is " {
		t.Fatalf("before Close: %q", got)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := joinChat(t, parseSSE(t, out.Bytes())); got != "the end is ey" {
		t.Fatalf("after Close: %q", got)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSSEMaxEvent(t *testing.T) {
	var out bytes.Buffer
	m := Default().NewSSE(&out, nil, StreamOptions{MaxEvent: 64})
	_, err := m.Write([]byte("data: " + strings.Repeat("x", 100)))
	if err == nil || !strings.Contains(err.Error(), "larger than 64") {
		t.Fatalf("Write = %v", err)
	}
	if _, err := m.Write([]byte("\n\n")); err == nil {
		t.Fatal("Write after the error succeeded")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

func TestSSEWriteError(t *testing.T) {
	m := Default().NewSSE(failWriter{}, nil, StreamOptions{})
	_, err := m.Write([]byte(chunk("hi")))
	if err == nil || !strings.Contains(err.Error(), "client gone") {
		t.Fatalf("Write = %v", err)
	}
}

// TestSSEChoices interleaves two choices (n=2) and a refusal.
func TestSSEChoices(t *testing.T) {
	s := Default()
	var b strings.Builder
	parts := []string{"k1 AKIAIOSF", "ODNN7EXAMPLE.", ""}
	parts2 := []string{"no: gh" + "p_" + alnum36[:10], alnum36[10:], " ok"}
	for i := range parts {
		b.WriteString(`data: {"choices":[{"index":0,"delta":{"content":` + q(parts[i]) + `}},{"index":1,"delta":{"refusal":` + q(parts2[i]) + `}}]}` + "\n\n")
	}
	b.WriteString(`data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"},{"index":1,"delta":{},"finish_reason":"stop"}]}` + "\n\n")
	out, _ := runSSE(t, s, []byte(b.String()), nil, []string{awsKey, ghTok})
	var c0, c1 string
	for _, ev := range parseSSE(t, out) {
		var c struct {
			Choices []struct {
				Index int
				Delta struct{ Content, Refusal string }
			}
		}
		if err := jsonUnmarshal(ev.data, &c); err != nil {
			t.Fatal(err)
		}
		for _, ch := range c.Choices {
			if ch.Index == 0 {
				c0 += ch.Delta.Content
			} else {
				c1 += ch.Delta.Refusal
			}
		}
	}
	if c0 != "k1 [MASKED:aws-access-key]." || c1 != "no: [MASKED:github-token] ok" {
		t.Fatalf("choices %q / %q", c0, c1)
	}
}

func TestEventMasker(t *testing.T) {
	s := Default()
	m := s.NewEventMasker(StreamOptions{})
	evs, err := m.Event([]byte(`{"type":"response.output_text.delta","item_id":"i","output_index":0,"content_index":0,"delta":"x AKIAIOSF"}`))
	if err != nil || len(evs) != 1 || string(evs[0]) != `{"type":"response.output_text.delta","item_id":"i","output_index":0,"content_index":0,"delta":"x "}` {
		t.Fatalf("Event = %q, %v", evs, err)
	}
	evs, _ = m.Event([]byte(`{"type":"response.output_text.delta","item_id":"i","output_index":0,"content_index":0,"delta":"ODNN7EXAMPLE y"}`))
	if len(evs) != 1 || !strings.Contains(string(evs[0]), `"delta":"[MASKED:aws-access-key] y"`) {
		t.Fatalf("Event = %q", evs)
	}
	evs, _ = m.Event([]byte(`{"type":"response.output_text.delta","item_id":"i","output_index":0,"content_index":0,"delta":" eyJ"}`))
	if len(evs) != 1 || !strings.Contains(string(evs[0]), `"delta":" "`) {
		t.Fatalf("Event = %q", evs)
	}
	// The WebSocket transport flushes at the end of the response.
	evs = m.Flush()
	if len(evs) != 1 || !strings.Contains(string(evs[0]), `"delta":"eyJ"`) || !strings.Contains(string(evs[0]), `"type":"response.output_text.delta"`) {
		t.Fatalf("Flush = %q", evs)
	}
	if m.Blocked() != nil || len(m.Result().Secrets) != 1 {
		t.Fatalf("result %+v", m.Result())
	}
	// Not JSON: masked as text.
	evs, err = m.Event([]byte("raw " + awsKey))
	if err != nil || len(evs) != 1 || string(evs[0]) != "raw [MASKED:aws-access-key]" {
		t.Fatalf("Event(text) = %q, %v", evs, err)
	}
}

// TestSSEAudioDeltaUntouched: base64 audio is not text; it passes as is.
func TestSSEAudioDeltaUntouched(t *testing.T) {
	s := Default()
	ev := `event: response.output_audio.delta` + "\n" + `data: {"type":"response.output_audio.delta","item_id":"a","delta":"AAAAeyJ"}` + "\n\n"
	var out bytes.Buffer
	m := s.NewSSE(&out, nil, StreamOptions{})
	m.Write([]byte(ev))
	if out.String() != ev {
		t.Fatalf("audio delta changed: %q", out.String())
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestLogprobsDropped checks that log probabilities, which carry the tokens
// of the text, do not let a masked secret through.
func TestLogprobsDropped(t *testing.T) {
	s := Default()
	lp := func(tok string) string {
		return `{"content":[{"token":` + q(tok) + `,"logprob":-0.1,"bytes":[1,2],"top_logprobs":[]}],"refusal":null}`
	}
	var b strings.Builder
	for _, d := range []string{"Hello ", "the key AKIA", "IOSFODNN7EXAMPLE", " bye"} {
		b.WriteString(`data: {"choices":[{"index":0,"delta":{"content":` + q(d) + `},"logprobs":` + lp(d) + `,"finish_reason":null}]}` + "\n\n")
	}
	out, _ := runSSE(t, s, []byte(b.String()), nil, []string{awsKey})
	evs := parseSSE(t, out)
	if !strings.Contains(evs[0].data, `"token":"Hello "`) {
		t.Errorf("logprobs of untouched text dropped: %s", evs[0].data)
	}
	for _, ev := range evs[1:] {
		if strings.Contains(ev.data, "AKIA") || strings.Contains(ev.data, "IOSF") || strings.Contains(ev.data, `"token"`) {
			t.Errorf("event after a held secret keeps its logprobs: %s", ev.data)
		}
	}
	if got := joinChat(t, evs); got != "Hello the key [MASKED:aws-access-key] bye" {
		t.Errorf("text %q", got)
	}

	body := `{"choices":[{"index":0,"message":{"role":"assistant","content":"key ` + awsKey + `"},"logprobs":{"content":[{"token":"AKIA","logprob":-1,"bytes":[65,75,73,65]},{"token":"IOSFODNN7EXAMPLE","logprob":-1}]}}]}`
	res := s.Response([]byte(body))
	if strings.Contains(string(res.Body), "IOSF") || !strings.Contains(string(res.Body), `"logprobs":null`) {
		t.Errorf("response logprobs: %s", res.Body)
	}
	clean := `{"choices":[{"message":{"content":"hi"},"logprobs":{"content":[{"token":"hi"}]}}]}`
	if res := s.Response([]byte(clean)); string(res.Body) != clean {
		t.Errorf("clean response changed: %s", res.Body)
	}
}

// TestSSEProseReleasedAtOnce checks that ordinary prose, streamed a word at
// a time as models do (" quick", " brown"), leaves the masker with the
// Write that brings each word: a word character followed by the start of a
// secret prefix ("e" of "eyJ", "n" of "npm_") is mid-word, where patterns
// that begin with \b cannot start; and "s" or "se", which could begin
// "secret_access_key=", pass too, because only the secret after the key
// name is masked. The only tails held are those that really could begin a
// masked value: "npm" of "npm_".
func TestSSEProseReleasedAtOnce(t *testing.T) {
	tests := []struct {
		text string
		held map[string]string // word -> the tail of it held until the next word
	}{
		{"The quick brown fox jumps over the lazy dog. ", nil},
		{"The build failed because the integration test expects the fixture file at its old path; update the path or restore it.", nil},
		{"Here is the code: func main() { fmt.Println(\"done\") } and the npm run build output.", map[string]string{" npm": "npm"}},
		{"Rename the file, then rerun the pipeline; the token expired yesterday.", nil},
		{"Webhooks post to hooks.slack.com/services/ and the secret_access_key setting is read from the vault.", nil},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		m := Default().NewSSE(&out, nil, StreamOptions{})
		var words []string
		for i, w := range strings.SplitAfter(tt.text, " ") {
			w = strings.TrimSuffix(w, " ")
			if i > 0 {
				w = " " + w
			}
			if w != "" {
				words = append(words, w)
			}
		}
		carry := ""
		for _, w := range words {
			out.Reset()
			if _, err := m.Write([]byte(chunk(w))); err != nil {
				t.Fatal(err)
			}
			tail := tt.held[w]
			want := chunk(carry + strings.TrimSuffix(w, tail))
			if carry == "" && tail == "" {
				want = chunk(w) // byte for byte the event that came in
			}
			if out.String() != want {
				t.Fatalf("%q: after %q written:\n%q\nwant\n%q", tt.text, w, out.String(), want)
			}
			carry = tail
		}
		m.Close()
	}
}

// TestSSEWordBoundarySplit checks secrets after a word character (not
// secrets: their patterns begin with \b) and after a space, cut at every
// position: the stream is masked as the whole text is, and a secret never
// reaches the client.
func TestSSEWordBoundarySplit(t *testing.T) {
	s := Default()
	jwt := fakeTokens["jwt"][0]
	npm := fakeTokens["npm-token"][0]
	for _, text := range []string{
		"The" + jwt + " and x" + awsKey + " and un" + npm + " end",
		"The " + jwt + " and (" + awsKey + ") and " + npm + " end",
		"caf" + "é" + jwt + " _" + awsKey,
	} {
		want := string(s.Response([]byte(text)).Body)
		var secrets []string
		for _, sec := range []string{jwt, awsKey, npm} {
			if !strings.Contains(want, sec) {
				secrets = append(secrets, sec)
			}
		}
		for _, deltas := range splits(text) {
			out, _ := runSSE(t, s, chatStream(deltas), nil, secrets)
			if got := joinChat(t, parseSSE(t, out)); got != want {
				t.Fatalf("deltas %q:\ngot  %q\nwant %q", deltas, got, want)
			}
		}
	}
}

// TestSSERandomDeltasAssertions streams random texts, cut into random
// deltas, through rules that begin with assertions (\b, \B, ^, (?m)^) and
// checks that the stream is masked as the whole text is, and that no
// value masked in the whole text reaches the client.
func TestSSERandomDeltasAssertions(t *testing.T) {
	extra := []Rule{
		{Name: "line", Pattern: `(?m)^pw:[a-z]{4}`, Action: Mask},
		{Name: "start", Pattern: `^top[0-9]{3}`, Action: Mask},
		{Name: "inner", Pattern: `\Bing[0-9]{3}`, Action: Mask},
		{Name: "word", Pattern: `\bkey-[0-9]{4}\b`, Action: Mask},
	}
	cs := append([]*compiled(nil), Default().rules...)
	for _, r := range extra {
		c, err := compile(r)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	s := newSet(cs)
	jwt := fakeTokens["jwt"][0]
	frags := []string{"pw:", "abcd", "\n", " ", "x", "_", "é", "ing", "123", "key-", "1234", "top", "The",
		"e", "ey", "eyJ", jwt, jwt[:20], jwt[20:], awsKey, "AKIA", "npm_", alnum36}
	r := rand.New(rand.NewPCG(11, 12))
	for range 300 {
		var b strings.Builder
		for range 1 + r.IntN(12) {
			b.WriteString(frags[r.IntN(len(frags))])
		}
		text := b.String()
		want := string(s.Response([]byte(text)).Body)
		var deltas []string
		for rest := text; rest != ""; {
			n := min(len(rest), 1+r.IntN(8))
			for n < len(rest) && !utf8.RuneStart(rest[n]) {
				n++
			}
			deltas, rest = append(deltas, rest[:n]), rest[n:]
		}
		var out bytes.Buffer
		m := s.NewSSE(&out, nil, StreamOptions{})
		m.Write(chatStream(deltas))
		m.Close()
		if got := joinChat(t, parseSSE(t, out.Bytes())); got != want {
			t.Fatalf("deltas %q:\ngot  %q\nwant %q", deltas, got, want)
		}
	}
}
