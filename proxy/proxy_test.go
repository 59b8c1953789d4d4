package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"say hi"}]}`

func okJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`)
}

func post(t *testing.T, c *http.Client, url, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, c, req)
}

// do sends req and reads the whole answer.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// apiErr decodes an OpenAI-shaped error body.
func apiErr(t *testing.T, b []byte) apiErrorBody {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Type == "" {
		t.Fatalf("not an OpenAI-shaped error: %q (%v)", b, err)
	}
	return e.Error
}

func TestChatCompletionSwapsCredentialAndRecords(t *testing.T) {
	e := newEnv(t, okJSON)
	resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"content":"hi"`) {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	seen := e.upstreamRequests()
	if len(seen) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(seen))
	}
	if got := seen[0].Header.Get("Authorization"); got != "Bearer "+testRealKey {
		t.Errorf("upstream Authorization = %q, want the real key", got)
	}
	for k, vs := range seen[0].Header {
		for _, v := range vs {
			if strings.Contains(v, testRunnerToken) {
				t.Errorf("runner token reached the upstream in %s", k)
			}
		}
	}
	recs := e.records()
	last := recs[len(recs)-1]
	if last.Kind != store.KindExchange || last.Outcome != store.OutcomeForwarded || last.Status != 200 {
		t.Fatalf("last record = %+v", last)
	}
	if last.Identity.Runner != "ci-1" || last.Model != "gpt-4o-mini" || last.Path != "/v1/chat/completions" || last.Host != "api.openai.com" {
		t.Errorf("record identity/model/path = %+v", last)
	}
	_, req, ans, err := e.store.Get(last.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if string(req) != chatBody || !strings.Contains(string(ans), `"content":"hi"`) {
		t.Errorf("recorded bodies: %q / %q", req, ans)
	}
	assertNoSecretInDB(t, e, testRealKey, testRunnerToken)
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, okJSON)
	cases := []struct {
		name, token string
		wantStatus  int
		wantType    string
		wantOutcome store.Outcome
	}{
		{"no credential", "", 401, errUnauthenticated, store.OutcomeUnauthenticated},
		{"unknown token", "sct_not-a-runner", 401, errUnauthenticated, store.OutcomeUnauthenticated},
		{"real-looking key", "sk-proj-abc", 401, errUnauthenticated, store.OutcomeUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", tc.token, chatBody)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.wantStatus, body)
			}
			if got := apiErr(t, body).Type; got != tc.wantType {
				t.Errorf("error type %q, want %q", got, tc.wantType)
			}
			if resp.Header.Get("X-Should-Retry") != "false" {
				t.Error("refusal lacks x-should-retry: false")
			}
			recs := e.records()
			if last := recs[len(recs)-1]; last.Kind != store.KindRefused || last.Outcome != tc.wantOutcome {
				t.Errorf("last record kind %q outcome %q", last.Kind, last.Outcome)
			}
		})
	}
	if n := len(e.upstreamRequests()); n != 0 {
		t.Errorf("upstream saw %d requests from refused runners", n)
	}
}

// rawProxy opens a TCP connection to the proxy and sends raw bytes.
func rawProxy(t *testing.T, e *env, data string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.proxyURL.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, data)
	out, _ := io.ReadAll(c)
	return string(out)
}

func TestBadInputOnProxyPort(t *testing.T) {
	e := newEnv(t, okJSON)
	cases := []struct{ name, send, want string }{
		{"non-intercepted host", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", "HTTP/1.1 403"},
		{"CONNECT without port", "CONNECT api.openai.com HTTP/1.1\r\nHost: api.openai.com\r\n\r\n", "HTTP/1.1 400"},
		{"malformed CONNECT line", "CONNECT \r\n\r\n", "HTTP/1.1 400"},
		{"garbage bytes", "\x16\x03\x01\x00\xff\x01garbage\r\n\r\n", "HTTP/1.1 400"},
		{"plain HTTP to intercepted host", "GET http://api.openai.com/v1/models HTTP/1.1\r\nHost: api.openai.com\r\nConnection: close\r\n\r\n", "HTTP/1.1 403"},
		{"not a proxy request", "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawProxy(t, e, tc.send); !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, want prefix %q", got, tc.want)
			}
		})
	}
	// The proxy still works after all that.
	if resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody); resp.StatusCode != 200 {
		t.Fatalf("after bad input: %d %s", resp.StatusCode, body)
	}
	var refused int
	for _, r := range e.records() {
		if r.Kind == store.KindRefused && r.Host == "evil.example" {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("refusal of evil.example recorded %d times, want 1", refused)
	}
	if n := len(e.upstreamRequests()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
}

func TestHostPinningInsideTunnel(t *testing.T) {
	e := newEnv(t, okJSON)
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", strings.NewReader(chatBody))
	req.Host = "attacker.example"
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	resp, body := do(t, e.client, req)
	if resp.StatusCode != http.StatusMisdirectedRequest || apiErr(t, body).Code != "host_mismatch" {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if n := len(e.upstreamRequests()); n != 0 {
		t.Fatalf("a request for another host reached the upstream")
	}
}

func TestStreamingIsNotBuffered(t *testing.T) {
	got := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"}}]}\n\n")
		w.(http.Flusher).Flush()
		// The rest is sent only once the client has read the first delta:
		// a proxy that buffers the answer would deadlock here.
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			return
		}
		for i := 0; i < 3; i++ {
			time.Sleep(200 * time.Millisecond)
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" more%d\"}}]}\n\n", i)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true,"messages":[]}`))
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "first") {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(got)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "more2") || !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("rest of stream: %q", rest)
	}
	recs := e.records()
	last := recs[len(recs)-1]
	if last.Outcome != store.OutcomeForwarded || len(last.Deltas) < 4 {
		t.Fatalf("stream record: outcome %q, %d deltas", last.Outcome, len(last.Deltas))
	}
	if d := last.Deltas; d[len(d)-1].OffsetMS-d[0].OffsetMS < 500 {
		t.Errorf("delta offsets do not show the upstream's pace: %+v", d)
	}
	_, _, ans, err := e.store.Get(last.SessionID)
	if err != nil || !strings.Contains(string(ans), "more2") {
		t.Errorf("recorded answer %q, %v", ans, err)
	}
}

func TestSecretSplitAcrossDeltasIsMasked(t *testing.T) {
	const secret = "AKIAIOSFODNN7EXAMPLQ"
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, part := range []string{"your key is AKIAIO", "SFODNN7EX", "AMPLQ ok"} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", part)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, `{"model":"m","stream":true,"messages":[{"role":"user","content":"my key AKIAIOSFODNN7EXAMPLQ"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if bytes.Contains(body, []byte(secret)) || bytes.Contains(stripDeltas(body), []byte(secret)) {
		t.Fatalf("secret reached the client: %q", body)
	}
	if !strings.Contains(string(stripDeltas(body)), "MASKED") {
		t.Errorf("no mask in the answer: %q", body)
	}
	seen := e.upstreamRequests()
	if bytes.Contains(readAll(seen[0].Body), []byte(secret)) {
		t.Error("secret in the prompt reached the upstream")
	}
	assertNoSecretInDB(t, e, secret)
	recs := e.records()
	if last := recs[len(recs)-1]; len(last.Rules) == 0 || len(last.SecretHMACs) == 0 {
		t.Errorf("record lacks rules fired or secret HMACs: %+v", last)
	}
}

// stripDeltas concatenates the content of every chat delta in an SSE body.
func stripDeltas(body []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(data), &ev) == nil {
			for _, c := range ev.Choices {
				out.WriteString(c.Delta.Content)
			}
		}
	}
	return out.Bytes()
}

func readAll(r io.Reader) []byte {
	b, _ := io.ReadAll(r)
	return b
}

func TestCompressedAnswersAreDecodedAndMasked(t *testing.T) {
	const secret = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
	answer := `{"choices":[{"message":{"content":"token ` + secret + `"}}]}`
	for _, enc := range []string{"gzip", "br"} {
		t.Run(enc, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				var buf bytes.Buffer
				switch enc {
				case "gzip":
					zw := gzip.NewWriter(&buf)
					io.WriteString(zw, answer)
					zw.Close()
				case "br":
					bw := brotli.NewWriter(&buf)
					io.WriteString(bw, answer)
					bw.Close()
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Encoding", enc)
				w.Write(buf.Bytes())
			})
			resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if resp.Header.Get("Content-Encoding") != "" {
				t.Errorf("stale Content-Encoding %q", resp.Header.Get("Content-Encoding"))
			}
			if !json.Valid(body) || strings.Contains(string(body), secret) || !strings.Contains(string(body), "MASKED") {
				t.Fatalf("body %q", body)
			}
		})
	}
}

func TestFailClosedWhenStoreCannotRecord(t *testing.T) {
	e := newEnv(t, okJSON)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	if resp.StatusCode != http.StatusServiceUnavailable || apiErr(t, body).Type != errUnavailable {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if n := len(e.upstreamRequests()); n != 0 {
		t.Fatal("traffic was forwarded while the store could not record it")
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	e := newEnv(t, okJSON)
	e.upstream.Close()
	resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	if resp.StatusCode != http.StatusBadGateway || apiErr(t, body).Type != errUpstream {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), testRealKey) {
		t.Fatal("real key in the error")
	}
	recs := e.records()
	if last := recs[len(recs)-1]; last.Outcome != store.OutcomeUpstreamError {
		t.Errorf("outcome %q", last.Outcome)
	}
}

func TestPassthroughIsSplicedNotDecrypted(t *testing.T) {
	e := newEnv(t, okJSON)
	// The client trusts the upstream's own CA, not sessctl's: it can only
	// succeed if sessctl splices the bytes instead of terminating TLS.
	upCA := readFile(t, e.upstreamCAFile())
	c := clientTrusting(e.proxyURL, upCA)
	resp, err := c.Get("https://other.example/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	if resp.TLS == nil || resp.TLS.PeerCertificates[0].Issuer.String() == "" {
		t.Fatal("no TLS")
	}
	testutil.WaitFor(t, 0, "the spliced passthrough record", func() bool {
		for _, r := range e.records() {
			if r.Kind == store.KindConnect && r.Host == "other.example" && r.Outcome == store.OutcomeSpliced {
				return true
			}
		}
		return false
	})
}

func assertNoSecretInDB(t *testing.T, e *env, secrets ...string) {
	t.Helper()
	data := readFile(t, e.dbPath)
	for _, s := range secrets {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("secret %.8s... found in the database file", s)
		}
	}
}

func TestRequestsTheRulesCannotReadAreRefused(t *testing.T) {
	e := newEnv(t, okJSON)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, `{"messages":[{"role":"user","content":"ghp_abcdefghijklmnopqrstuvwxyz0123456789"}]}`)
	zw.Close()
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", bytes.NewReader(gz.Bytes()))
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	req.Header.Set("Content-Encoding", "gzip")
	resp, body := do(t, e.client, req)
	if resp.StatusCode != http.StatusUnsupportedMediaType || apiErr(t, body).Code != "compressed_request" {
		t.Fatalf("compressed request: %d %s", resp.StatusCode, body)
	}
	if n := len(e.upstreamRequests()); n != 0 {
		t.Fatal("a compressed request reached the upstream")
	}
}

func TestQueryHeadersAndMetaAreMasked(t *testing.T) {
	const secret = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		// An answer of no declared type is masked too.
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, "here: "+secret)
	})
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/files?purpose=x&leak="+secret, strings.NewReader(chatBody))
	req.Header.Set("Authorization", "Bearer "+testRunnerToken)
	req.Header.Set("OpenAI-Organization", "org-chosen-by-runner")
	req.Header.Set("Sessctl-Meta-Note", "token "+secret)
	resp, body := do(t, e.client, req)
	if resp.StatusCode != 200 || strings.Contains(string(body), secret) {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	up := e.upstreamRequests()[0]
	if strings.Contains(up.URL.RawQuery, secret) || up.URL.Query().Get("purpose") != "x" {
		t.Errorf("upstream query %q", up.URL.RawQuery)
	}
	if up.Header.Get("OpenAI-Organization") != "" {
		t.Error("the runner chose the organisation billed")
	}
	recs := e.records()
	last := recs[len(recs)-1]
	if strings.Contains(last.Extra["query"], secret) || strings.Contains(last.Meta["note"], secret) || !strings.Contains(last.Meta["note"], "MASKED") {
		t.Errorf("record query %q meta %q", last.Extra["query"], last.Meta)
	}
	assertNoSecretInDB(t, e, secret)
}

func TestInflightLimitPerIdentity(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		okJSON(w, r)
	}, func(o *Options) { o.MaxInflight = 1 })
	done := make(chan int, 1)
	go func() {
		resp, _ := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
		done <- resp.StatusCode
	}()
	testutil.WaitFor(t, 0, "the first request upstream", func() bool { return len(e.upstreamRequests()) == 1 })
	resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	if resp.StatusCode != http.StatusTooManyRequests || apiErr(t, body).Type != errRateLimited || resp.Header.Get("X-Should-Retry") != "true" {
		t.Fatalf("second request in flight: %d %s", resp.StatusCode, body)
	}
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("first request: %d", code)
	}
	// The slot is free again.
	if resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody); resp.StatusCode != 200 {
		t.Fatalf("after the first finished: %d %s", resp.StatusCode, body)
	}
}
