package rules

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var (
	awsKey = "AKIA" + "IOSFODNN7EXAMPLE"
	ghTok  = "gh" + "p_" + alnum36
)

func TestRequestJSON(t *testing.T) {
	s := Default()
	tests := []struct {
		name string
		body string
		want string // the body after masking, compared as decoded JSON
	}{
		{
			"chat messages",
			`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"key ` + awsKey + ` here"}]}`,
			`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"key [MASKED:aws-access-key] here"}]}`,
		},
		{
			"escaped evasion",
			`{"messages":[{"role":"user","content":"\u0041KIA` + awsKey[4:] + `\n"}]}`,
			`{"messages":[{"role":"user","content":"[MASKED:aws-access-key]\n"}]}`,
		},
		{
			"responses input and instructions",
			`{"model":"o3","instructions":"token ` + ghTok + `","input":[{"role":"user","content":[{"type":"input_text","text":"` + awsKey + `"}]},{"type":"function_call_output","call_id":"c1","output":"{\"key\":\"` + awsKey + `\"}"}]}`,
			`{"model":"o3","instructions":"token [MASKED:github-token]","input":[{"role":"user","content":[{"type":"input_text","text":"[MASKED:aws-access-key]"}]},{"type":"function_call_output","call_id":"c1","output":"{\"key\":\"[MASKED:aws-access-key]\"}"}]}`,
		},
		{
			"tool call arguments",
			`{"messages":[{"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{\"k\":\"` + ghTok + `\"}"}}]}]}`,
			`{"messages":[{"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{\"k\":\"[MASKED:github-token]\"}"}}]}]}`,
		},
		{
			"object keys",
			`{"metadata":{"` + awsKey + `":"v"}}`,
			`{"metadata":{"[MASKED:aws-access-key]":"v"}}`,
		},
		{
			"pem with escaped newlines",
			`{"input":"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nthanks"}`,
			`{"input":"[MASKED:private-key]\nthanks"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.Request([]byte(tt.body))
			if !json.Valid(res.Body) {
				t.Fatalf("masked body is not JSON: %s", res.Body)
			}
			var got, want any
			json.Unmarshal(res.Body, &got)
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("masked\n%s\nwant\n%s", res.Body, tt.want)
			}
			if len(res.Hits) == 0 || len(res.Secrets) == 0 {
				t.Errorf("hits %v secrets %q", res.Hits, res.Secrets)
			}
		})
	}
}

// TestRequestKeepsBytes checks that only masked strings change: numbers,
// spacing, escapes and key order elsewhere stay byte for byte.
func TestRequestKeepsBytes(t *testing.T) {
	s := Default()
	prefix := "{\n  \"n\": 1.50e+3, \"u\": \"caf\\u00e9 \\/ \\ud83d\\ude00\",\n  \"b\": [true, false, null],\n"
	body := prefix + `  "m": "x ` + awsKey + `"}`
	res := s.Request([]byte(body))
	want := prefix + `  "m": "x [MASKED:aws-access-key]"}`
	if string(res.Body) != want {
		t.Errorf("got\n%s\nwant\n%s", res.Body, want)
	}
	// Escapes around a masked value stay as they were.
	body = `{"m":"caf\u00e9\t` + awsKey + `\n\u0041KIA` + awsKey[4:] + `\/\ud83d\ude00 <q=\"` + ghTok + `\">"}`
	res = s.Request([]byte(body))
	want = `{"m":"caf\u00e9\t[MASKED:aws-access-key]\n[MASKED:aws-access-key]\/\ud83d\ude00 <q=\"[MASKED:github-token]\">"}`
	if string(res.Body) != want {
		t.Errorf("got\n%s\nwant\n%s", res.Body, want)
	}
	clean := []byte(prefix + `"z": "nothing here"}`)
	res = s.Request(clean)
	if &res.Body[0] != &clean[0] || len(res.Hits) != 0 || res.Secrets != nil {
		t.Error("a body with no hit was copied or changed")
	}
}

func TestRequestInvalidJSONAsText(t *testing.T) {
	s := Default()
	for _, body := range []string{
		`{"messages": [ "truncated ` + awsKey,
		"plain text with " + awsKey + " inside",
		"--boundary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + awsKey + "\r\n--boundary--",
	} {
		res := s.Request([]byte(body))
		if strings.Contains(string(res.Body), awsKey) || !fired(res, "aws-access-key") {
			t.Errorf("%q: body %q hits %v", body, res.Body, res.Hits)
		}
		if want := strings.ReplaceAll(body, awsKey, "[MASKED:aws-access-key]"); string(res.Body) != want {
			t.Errorf("%q: body %q, want %q", body, res.Body, want)
		}
	}
	clean := []byte(`{"not json`)
	if res := s.Request(clean); &res.Body[0] != &clean[0] {
		t.Error("invalid JSON with no hit was copied")
	}
	if res := s.Request(nil); len(res.Body) != 0 || len(res.Hits) != 0 {
		t.Errorf("empty body: %+v", res)
	}
}

func TestResponseJSON(t *testing.T) {
	s := Default()
	body := `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"use ` + ghTok + `","refusal":null},"finish_reason":"stop"}],"usage":{"total_tokens":9}}`
	res := s.Response([]byte(body))
	if strings.Contains(string(res.Body), ghTok) || !json.Valid(res.Body) {
		t.Fatalf("body %s", res.Body)
	}
	if len(res.Hits) != 1 || res.Hits[0] != (Hit{Rule: "github-token", Action: Mask, Scope: ScopeResponse, Count: 1}) {
		t.Errorf("hits %+v", res.Hits)
	}
}

func TestFilters(t *testing.T) {
	s, err := Parse([]byte(`
rules:
  - name: host
    pattern: '\b[a-z0-9-]+\.corp\.example\b'
    action: mask
    allow: ['^(?:www|docs)\.']
  - name: password
    pattern: '(?i)\bpassword\s*=\s*(?P<secret>\S+)'
    action: mask
    replacement: '***'
    entropy: 2.5
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"see db1.corp.example now", "see [MASKED:host] now"},
		{"see www.corp.example and docs.corp.example", "see www.corp.example and docs.corp.example"},
		{"password = Zx8!qPw2#Lm", "password = ***"},
		{"password = aaaaaaaa", "password = aaaaaaaa"}, // entropy 0
		{"PASSWORD=hunter2hunter2", "PASSWORD=***"},    // entropy ~2.8
		{"password = abababab", "password = abababab"}, // entropy 1
	}
	for _, tt := range tests {
		res := s.Request([]byte(tt.in))
		if string(res.Body) != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, res.Body, tt.want)
		}
	}
	res := s.Request([]byte("password = Zx8!qPw2#Lm"))
	if len(res.Secrets) != 1 || string(res.Secrets[0]) != "Zx8!qPw2#Lm" {
		t.Errorf("secrets %q: want only the secret group", res.Secrets)
	}
}

func TestOverlapsAndCounts(t *testing.T) {
	s, err := Parse([]byte(`
rules:
  - name: abc
    pattern: 'abc'
    action: mask
  - name: bcd
    pattern: 'bcd'
    action: mask
    replacement: '<bcd>'
  - name: stop
    pattern: 'STOP'
    action: block
  - name: ask
    pattern: 'ASK'
    action: approve
`))
	if err != nil {
		t.Fatal(err)
	}
	res := s.Request([]byte(`["abcd abc", "abc", "bcd STOP ASK STOP"]`))
	if want := `["[MASKED:abc] [MASKED:abc]", "[MASKED:abc]", "<bcd> STOP ASK STOP"]`; string(res.Body) != want {
		t.Errorf("body %s, want %s", res.Body, want)
	}
	wantHits := []Hit{
		{"abc", Mask, ScopeRequest, 3},
		{"bcd", Mask, ScopeRequest, 2},
		{"stop", Block, ScopeRequest, 2},
		{"ask", Approve, ScopeRequest, 1},
	}
	if !reflect.DeepEqual(res.Hits, wantHits) {
		t.Errorf("hits %+v, want %+v", res.Hits, wantHits)
	}
	if res.Block == nil || res.Block.Name != "stop" || res.Approve == nil || res.Approve.Name != "ask" {
		t.Errorf("block %v approve %v", res.Block, res.Approve)
	}
	if len(res.Secrets) != 2 || !bytes.Equal(res.Secrets[0], []byte("abc")) || !bytes.Equal(res.Secrets[1], []byte("bcd")) {
		t.Errorf("secrets %q", res.Secrets)
	}
}

func TestJSONQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\s/", "\x00\x01\x1f\t\n\r", "é😀", "\u2028\u2029", "bad\xffutf8", "<&>"} {
		q := appendQuote(nil, []byte(s))
		var back string
		if err := json.Unmarshal(q, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, q, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if back != want {
			t.Errorf("%q -> %s -> %q", s, q, back)
		}
		if got := string(appendUnquote(nil, q)); got != want {
			t.Errorf("unquote(%s) = %q, want %q", q, got, want)
		}
	}
	// Escapes encoding/json accepts decode as it decodes them.
	for _, tok := range []string{`"\ud83d\ude00"`, `"\ud83d"`, `"\ude00x"`, `"\ud83d\u0041"`, `"\b\f\/"`} {
		var want string
		if err := json.Unmarshal([]byte(tok), &want); err != nil {
			t.Fatal(err)
		}
		if got := string(appendUnquote(nil, []byte(tok))); got != want {
			t.Errorf("unquote(%s) = %q, want %q", tok, got, want)
		}
	}
}

func TestScanJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, src := range []string{
		`{}`, `[]`, `""`, `0`, `-0.5e-3`, `{"a":[1,{"b":null}]}`, ` [ true , false ] `,
		`{`, `[1,]`, `{"a" 1}`, `01`, `1.`, `"\x"`, "\"a\x01\"", `nul`, `{"a":1}x`, `[1 2]`, `-`, `"\u12"`,
	} {
		_, ok := scanJSON([]byte(src))
		if ok != json.Valid([]byte(src)) {
			t.Errorf("scanJSON(%q) = %v, json.Valid says %v", src, ok, !ok)
		}
	}
	deep := strings.Repeat("[", maxDepth+5) + strings.Repeat("]", maxDepth+5)
	if _, ok := scanJSON([]byte(deep)); ok {
		t.Error("scanJSON accepted a document deeper than maxDepth")
	}
}
