package jsonobj

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// refMember is a member as reference reads it.
type refMember struct {
	key                     string
	start, valStart, valEnd int
}

// reference reads the members of src with a json.Decoder: the reading
// Members must agree with.
func reference(src []byte) ([]refMember, int, bool) {
	dec := json.NewDecoder(bytes.NewReader(src))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, 0, false
	}
	open := int(dec.InputOffset())
	var ms []refMember
	prev := open
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, 0, false
		}
		key, ok := tok.(string)
		if !ok {
			return nil, 0, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, 0, false
		}
		end := int(dec.InputOffset())
		ms = append(ms, refMember{key: key, start: prev, valStart: end - len(v), valEnd: end})
		prev = end
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, 0, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, 0, false
	}
	return ms, open, true
}

// agree fails t when Members and reference read src differently.
func agree(t *testing.T, src []byte) {
	t.Helper()
	want, wantOpen, wantOK := reference(src)
	got, open, err := Members(src, nil)
	if (err == nil) != wantOK {
		t.Fatalf("Members(%q): err %v, reference ok %v", src, err, wantOK)
	}
	if !wantOK {
		return
	}
	if open != wantOpen || len(got) != len(want) {
		t.Fatalf("Members(%q): open %d, %d members; reference %d, %d", src, open, len(got), wantOpen, len(want))
	}
	for i, m := range got {
		w := want[i]
		if m.Name() != w.key || m.Start != w.start || m.ValStart != w.valStart || m.ValEnd != w.valEnd {
			t.Fatalf("Members(%q)[%d] = %q %d %d %d; reference %q %d %d %d", src, i, m.Name(), m.Start, m.ValStart, m.ValEnd, w.key, w.start, w.valStart, w.valEnd)
		}
		upper := strings.ToUpper(w.key)
		if !bytes.Equal(m.Value, src[m.ValStart:m.ValEnd]) || !m.Is(w.key) || m.Fold(upper) != bytes.EqualFold([]byte(w.key), []byte(upper)) {
			t.Fatalf("Members(%q)[%d]: Value, Is or Fold disagree with the name %q", src, i, w.key)
		}
	}
}

var cases = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a" : 1 , "b":[1,2,{"c":null}] }`, "\t{\"a\":\"x\"}\n",
	`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi \"there\" \u00e9\n"}],"stream":true}`,
	`{"mod\u0065l":"o3"}`, `{"a\"b":1}`, `{"\ud800":1}`, "{\"\xff\":1}", "{\"a\":\"\xff\xfe\"}",
	`{"a":-0.5e+10,"b":0,"c":-1,"d":1E5,"e":12.25}`, `{"a":true,"b":false,"c":null}`,
	// Invalid.
	``, ` `, `[]`, `"a"`, `1`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,"a":1}`, `{"a":1 "b":2}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":+1}`, `{"a":tru}`, `{"a":truex}`,
	`{"a":nul}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, "{\"a\":\"\x01\"}", `{"a":"x}`,
	`{a:1}`, `{'a':1}`, `{"a":1}x`, `{"a":1}{}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":{"b"}}`,
	`{"a":NaN}`, `{"a":Infinity}`, "\ufeff{}", `{"a":1}}`, `{"a":[}`,
}

func TestMembersAgreesWithDecoder(t *testing.T) {
	for _, c := range cases {
		agree(t, []byte(c))
	}
}

func TestValid(t *testing.T) {
	for _, c := range append(cases, `[1,2]`, `"s"`, `12`, ` null `, `[`, `[1 2]`) {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%q) = %v, json.Valid %v", c, got, want)
		}
	}
}

func TestDepth(t *testing.T) {
	deep := func(n int) []byte {
		return []byte(`{"a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`)
	}
	agree(t, deep(maxDepth))
	agree(t, deep(maxDepth+1))
	if _, _, err := Members(deep(maxDepth), nil); err != nil {
		t.Fatalf("a value nesting %d levels was refused: %v", maxDepth, err)
	}
	if _, _, err := Members(deep(maxDepth+1), nil); err == nil {
		t.Fatalf("a value nesting %d levels was accepted", maxDepth+1)
	}
}

func FuzzMembers(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		agree(t, src)
		if got, want := Valid(src), json.Valid(src); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid %v", src, got, want)
		}
	})
}

// chatRequest is a chat completion request of about 1.6 KB.
var chatRequest = []byte(`{"messages":[{"content":"You are a helpful assistant that explains CI failures concisely.","role":"system"},{"content":"The CI job failed. Here is the end of the log:\n` +
	strings.Repeat(`--- FAIL: TestLoadConfig (0.00s)\n    config_test.go:41: open testdata/config.yaml: no such file or directory\n`, 12) +
	`What went wrong and how do I fix it?","role":"user"}],"model":"gpt-4o-mini","stream":false,"temperature":0.2}`)

// BenchmarkMembers reads the members of a chat completion request; the
// decoder case is what sessctl did before (json.Decoder, one Token and
// one RawMessage per member).
func BenchmarkMembers(b *testing.B) {
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(chatRequest)))
		b.ReportAllocs()
		var buf [8]Member
		for i := 0; i < b.N; i++ {
			if _, _, err := Members(chatRequest, buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder", func(b *testing.B) {
		b.SetBytes(int64(len(chatRequest)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, ok := reference(chatRequest); !ok {
				b.Fatal("not an object")
			}
		}
	})
}
