package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

// antSecret is split across deltas by the Anthropic stand-in.
const antSecret = "AKIA" + "IOSFODNN7EXAMPLQ"

// antSignature is the stand-in's thinking signature: opaque bytes that
// sessctl must pass unchanged.
const antSignature = "EqQBCkYIBhgCIkB4c2VzcWN0bC1zdGFuZC1pbi1zaWduYXR1cmUAAAAAAA=="

// anthropicStandIn speaks enough of the Anthropic Messages API for the
// official SDK: /v1/messages (non-streaming; streaming text, tool use with
// input_json_delta, thinking), /v1/messages/count_tokens and /v1/models.
// What it answers depends on the prompt. It refuses any key but the real
// Anthropic key, as Anthropic would.
func anthropicStandIn(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Api-Key") != testAnthropicKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
		return
	}
	switch r.URL.Path {
	case "/v1/models":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data":[{"type":"model","id":"claude-sonnet-4-5","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"}],"has_more":false,"first_id":"claude-sonnet-4-5","last_id":"claude-sonnet-4-5"}`)
		return
	case "/v1/messages/count_tokens":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"input_tokens":12}`)
		return
	case "/v1/messages":
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"type":"error","error":{"type":"not_found_error","message":"no such path"}}`)
		return
	}
	var req struct {
		Stream   bool `json:"stream"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	body, _ := io.ReadAll(r.Body)
	json.Unmarshal(body, &req)
	prompt := ""
	if len(req.Messages) > 0 {
		prompt = req.Messages[0].Content
	}
	if !req.Stream {
		content := `[{"type":"text","text":"hello from claude"}]`
		switch {
		case strings.Contains(prompt, "answer with sql"):
			content = `[{"type":"text","text":"Run DROP TABLE users; now."}]`
		case strings.Contains(prompt, "leak in thinking"):
			content = `[{"type":"thinking","thinking":"The key is ` + antSecret + `.","signature":"` + antSignature + `"},{"type":"text","text":"done"}]`
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":`+content+`,"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":3}}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl := w.(http.Flusher)
	send := func(typ, data string) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
		fl.Flush()
	}
	delta := func(i int, kind, field, piece string) {
		p, _ := json.Marshal(piece)
		send("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":%q,%q:%s}}`, i, kind, field, p))
	}
	send("message_start", `{"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}`)
	stop := "end_turn"
	switch {
	case strings.Contains(prompt, "use the tool"):
		send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"bash","input":{}}}`)
		input := `{"command": "export AWS_ACCESS_KEY_ID=` + antSecret + `"}`
		for _, p := range []string{"", input[:9], input[9:31], input[31:40], input[40:]} {
			delta(0, "input_json_delta", "partial_json", p)
		}
		send("content_block_stop", `{"type":"content_block_stop","index":0}`)
		stop = "tool_use"
	case strings.Contains(prompt, "think first"), strings.Contains(prompt, "leak in thinking"):
		send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}`)
		if strings.Contains(prompt, "leak in thinking") {
			delta(0, "thinking_delta", "thinking", "The key is "+antSecret[:8])
			delta(0, "thinking_delta", "thinking", antSecret[8:]+".")
		} else {
			delta(0, "thinking_delta", "thinking", "The user wants ")
			delta(0, "thinking_delta", "thinking", "a short answer.")
		}
		delta(0, "signature_delta", "signature", antSignature)
		send("content_block_stop", `{"type":"content_block_stop","index":0}`)
		send("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}`)
		delta(1, "text_delta", "text", "Short answer.")
		send("content_block_stop", `{"type":"content_block_stop","index":1}`)
	default:
		text := "Your key is " + antSecret + " ok."
		if strings.Contains(prompt, "answer with sql") {
			text = "Run DROP TABLE users; now."
		}
		send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		send("ping", `{"type": "ping"}`)
		for i := 0; i < len(text); i += 5 {
			delta(0, "text_delta", "text", text[i:min(i+5, len(text))])
		}
		send("content_block_stop", `{"type":"content_block_stop","index":0}`)
	}
	send("message_delta", `{"type":"message_delta","delta":{"stop_reason":"`+stop+`","stop_sequence":null},"usage":{"output_tokens":15}}`)
	send("message_stop", `{"type":"message_stop"}`)
}

// anthropicRules are the shipped rules and a block rule for both
// directions.
func anthropicRules(t *testing.T) *rules.Set {
	t.Helper()
	def, err := os.ReadFile("../rules/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Parse(append(def, `
  - name: no-drop
    pattern: '(?i)drop\s+table'
    action: block
    scope: [request, response]
    message: no SQL through sessctl
`...))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// newAnthropicEnv is a sessctl intercepting OpenAI and Anthropic, each
// with its own key and its own stand-in.
func newAnthropicEnv(t *testing.T, opts ...envOption) (*env, *standIn) {
	rs := anthropicRules(t)
	e := newEnv(t, okJSON, append([]envOption{func(o *Options) {
		o.Intercept = []string{"api.openai.com", "api.anthropic.com"}
		o.Keys = provider.Keys{provider.OpenAI: {"": testOpenAIKey}, provider.Anthropic: {"": testAnthropicKey}}
		o.Rules = func() *rules.Set { return rs }
	}}, opts...)...)
	return e, e.addUpstream("api.anthropic.com", anthropicStandIn)
}

// checkAnthropicUpstream checks that every request the stand-in got
// carried the real Anthropic key in x-api-key and nothing else.
func checkAnthropicUpstream(t *testing.T, e *env, ant *standIn) {
	t.Helper()
	for _, r := range ant.requests() {
		if got := keysSeen([]*http.Request{r}); len(got) != 1 || r.Header.Get("X-Api-Key") != testAnthropicKey {
			t.Errorf("%s %s reached the stand-in with credentials %q", r.Method, r.URL.Path, got)
		}
	}
	if n := len(e.upstreamRequests()); n != 0 {
		t.Errorf("the OpenAI stand-in got %d requests", n)
	}
}

// TestAnthropicNodeSDK runs the official Anthropic Node SDK through the
// real proxy, a runner token as its ANTHROPIC_API_KEY.
func TestAnthropicNodeSDK(t *testing.T) {
	node := nodeSDK(t)
	if _, err := os.Stat(filepath.Join(nodeSDKDir, "node_modules", "@anthropic-ai", "sdk", "package.json")); err != nil {
		t.Skip("@anthropic-ai/sdk is not installed: run `npm ci --prefix proxy/testdata/node`")
	}
	e, ant := newAnthropicEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "anthropic.mjs")
	cmd.Dir = nodeSDKDir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"ANTHROPIC_API_KEY=" + testRunnerToken,
		"HTTPS_PROXY=" + e.proxyURL.String(),
		"NODE_EXTRA_CA_CERTS=" + e.caFile(),
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node anthropic.mjs: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	got := map[string]map[string]any{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		got[v["scenario"].(string)] = v
	}
	if len(got) != 9 {
		t.Fatalf("%d scenarios reported, want 9:\n%s\nstderr:\n%s", len(got), stdout.String(), stderr.String())
	}
	masked := "Your key is [MASKED:aws-access-key] ok."
	check := func(name, path string, want any) {
		t.Helper()
		var v any = got[name]
		for _, k := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		if fmt.Sprint(v) != fmt.Sprint(want) {
			t.Errorf("%s: %s = %v, want %v", name, path, v, want)
		}
	}
	check("non-streaming", "text", "hello from claude")
	check("stream-text", "deltas", masked)
	check("stream-text", "text", masked)
	check("stream-text", "stop", "end_turn")
	// The SDK parsed the reassembled tool input: it is valid JSON.
	check("stream-tool", "input.command", "export AWS_ACCESS_KEY_ID=[MASKED:aws-access-key]")
	check("stream-tool", "stop", "tool_use")
	check("stream-thinking", "thinking", "The user wants a short answer.")
	check("stream-thinking", "signature", antSignature)
	check("stream-thinking", "text", "Short answer.")
	check("count-tokens", "input_tokens", 12)
	check("models", "ids", []any{"claude-sonnet-4-5"})
	check("refused-prompt", "error.status", 403)
	check("refused-prompt", "error.type", "permission_error")
	check("refused-prompt", "error.class", "PermissionDeniedError")
	check("bad-token", "error.status", 401)
	check("bad-token", "error.type", "authentication_error")
	check("bad-token", "error.class", "AuthenticationError")
	if msg := fmt.Sprint(got["blocked-stream"]["error"]); !strings.Contains(msg, "blocked by rule") || !strings.Contains(msg, "no-drop") {
		t.Errorf("blocked stream surfaced as %v", msg)
	}
	if strings.Contains(stdout.String(), antSecret[4:]) {
		t.Error("the secret reached the SDK")
	}
	checkAnthropicUpstream(t, e, ant)

	// No retries: the refused prompt and the bad token never reached the
	// stand-in and were refused once each; the blocked answer was asked
	// for once.
	var refused, sqlAsked int
	for _, r := range ant.requests() {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), "DROP TABLE") {
			t.Error("the refused prompt reached the stand-in")
		}
		if strings.Contains(string(b), "answer with sql") {
			sqlAsked++
		}
	}
	recs := e.records()
	byOutcome := map[store.Outcome]int{}
	for _, r := range recs {
		if r.Kind != store.KindExchange && r.Kind != store.KindRefused {
			continue
		}
		if r.Provider != "anthropic" || r.Host != "api.anthropic.com" || r.Outcome == store.OutcomeUnauthenticated && r.Identity.Runner != "" {
			t.Errorf("record %d: provider %q host %q", r.Seq, r.Provider, r.Host)
		}
		byOutcome[r.Outcome]++
		if r.Kind == store.KindRefused {
			refused++
		}
	}
	if refused != 2 || sqlAsked != 1 {
		t.Errorf("refused %d times, blocked answer asked %d times; want 2 and 1 (no retries)", refused, sqlAsked)
	}
	if byOutcome[store.OutcomeForwarded] != 6 || byOutcome[store.OutcomeBlocked] != 2 || byOutcome[store.OutcomeUnauthenticated] != 1 {
		t.Errorf("outcomes %v, want 6 forwarded, 2 blocked, 1 unauthenticated", byOutcome)
	}
	assertNoSecretInDB(t, e, antSecret, testRunnerToken, testAnthropicKey)
	verifyLog(t, e)
}

// verifyLog closes the proxy and the store and verifies the log.
func verifyLog(t *testing.T, e *env) {
	t.Helper()
	e.proxy.Close()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := store.Verify(e.dbPath, store.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v", rep.Problems)
	}
}

// TestAnthropicRetryMeetsTheSameRule: Claude Code answers an error event
// in a stream with one non-streaming retry of the same request; that
// retry meets the same rule. A secret in a thinking block ends the stream
// and withholds the whole answer, the block unedited either way.
func TestAnthropicRetryMeetsTheSameRule(t *testing.T) {
	e, ant := newAnthropicEnv(t)
	ask := func(prompt string, stream bool) (*http.Response, []byte) {
		b, _ := json.Marshal(map[string]any{"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
			"messages": []map[string]string{{"role": "user", "content": prompt}}})
		req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages", bytes.NewReader(b))
		req.Header.Set("X-Api-Key", testRunnerToken)
		return do(t, e.client, req)
	}
	lastEvent := func(stream []byte) string {
		evs := strings.Split(strings.TrimSpace(string(stream)), "\n\n")
		return evs[len(evs)-1]
	}
	for _, tc := range []struct{ prompt, code, reason string }{
		{"answer with sql", "no-drop", "answer blocked by rule no-drop"},
		{"leak in thinking", "thinking_not_edited", "thinking block"},
	} {
		resp, body := ask(tc.prompt, true)
		last := lastEvent(body)
		if resp.StatusCode != 200 || !strings.HasPrefix(last, "event: error\ndata: ") || !strings.Contains(last, `"type":"permission_error"`) {
			t.Fatalf("%s: stream status %d ends with %q", tc.prompt, resp.StatusCode, last)
		}
		resp, body = ask(tc.prompt, false)
		if resp.StatusCode != 403 || resp.Header.Get("X-Should-Retry") != "false" {
			t.Fatalf("%s: retry status %d body %s", tc.prompt, resp.StatusCode, body)
		}
		var v struct {
			Error struct {
				Type        string `json:"type"`
				SessctlCode string `json:"sessctl_code"`
			} `json:"error"`
		}
		json.Unmarshal(body, &v)
		if v.Error.Type != "permission_error" || v.Error.SessctlCode != tc.code {
			t.Errorf("%s: retry refused with %s", tc.prompt, body)
		}
		for _, s := range []string{"DROP", antSecret[4:], "MASKED"} {
			if bytes.Contains(body, []byte(s)) {
				t.Errorf("%s: the refusal carries %q", tc.prompt, s)
			}
		}
		recs := e.records()
		for _, r := range recs[len(recs)-2:] {
			if r.Outcome != store.OutcomeBlocked || !strings.Contains(r.Reason, tc.reason) && !strings.Contains(r.Reason, tc.code) {
				t.Errorf("%s: record outcome %q reason %q", tc.prompt, r.Outcome, r.Reason)
			}
		}
	}
	checkAnthropicUpstream(t, e, ant)
	assertNoSecretInDB(t, e, antSecret)
}
