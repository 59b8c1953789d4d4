package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

const wsRules = `
rules:
  - name: aws-access-key
    pattern: '\b(?:AKIA|ASIA)[A-Z2-7]{16}\b'
    action: mask
    scope: [request, response]
  - name: destructive-sql
    pattern: '(?i)\bdrop\s+table\b'
    action: block
    scope: [request]
    message: destructive SQL in a prompt
`

// wsUpstream answers each response.create with a stream of events; the
// secret it emits is split across two deltas.
func wsUpstream(t *testing.T, handshakeAuth chan<- string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case handshakeAuth <- r.Header.Get("Authorization"):
		default:
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionContextTakeover})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(64 << 20)
		ctx := context.Background()
		for n := 0; ; n++ {
			_, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			var ev struct {
				Type string `json:"type"`
			}
			json.Unmarshal(msg, &ev)
			if ev.Type != "response.create" {
				continue
			}
			send := func(s string) { c.Write(ctx, websocket.MessageText, []byte(s)) }
			send(fmt.Sprintf(`{"type":"response.created","response":{"id":"resp_%d"}}`, n))
			send(`{"type":"response.output_text.delta","delta":"key: AKIAIOSFO"}`)
			send(`{"type":"response.output_text.delta","delta":"DNN7EXAMPLQ done"}`)
			send(`{"type":"response.output_text.done","text":"key: AKIAIOSFODNN7EXAMPLQ done"}`)
			send(fmt.Sprintf(`{"type":"response.completed","response":{"id":"resp_%d","usage":{"input_bytes":%d}}}`, n, len(msg)))
		}
	}
}

func dialWS(t *testing.T, e *env, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://api.openai.com/v1/responses", &websocket.DialOptions{
		HTTPClient:      e.client,
		HTTPHeader:      http.Header{"Authorization": {"Bearer " + token}, "OpenAI-Beta": {"responses_websockets=2026-02-06"}},
		CompressionMode: websocket.CompressionContextTakeover,
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	c.SetReadLimit(64 << 20)
	return c
}

// readUntil reads events until one of type stop, returning them all.
func readUntil(t *testing.T, c *websocket.Conn, stop ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var evs []string
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read after %d events: %v", len(evs), err)
		}
		evs = append(evs, string(msg))
		for _, s := range stop {
			if wsType(msg) == s {
				return evs
			}
		}
	}
}

func TestWebSocketResponses(t *testing.T) {
	auth := make(chan string, 4)
	set, err := rules.Parse([]byte(wsRules))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, wsUpstream(t, auth), func(o *Options) { o.Rules = func() *rules.Set { return set } })
	c := dialWS(t, e, testRunnerToken)
	defer c.CloseNow()
	if got := <-auth; got != "Bearer "+testRealKey {
		t.Fatalf("upstream handshake Authorization = %q", got)
	}
	ctx := context.Background()

	// A long response.create, as a coding agent's whole context.
	big := strings.Repeat("lorem ipsum ", 10_000) // 120 kB
	create := fmt.Sprintf(`{"type":"response.create","model":"gpt-5-codex","input":[{"role":"user","content":%q}]}`, big)
	if err := c.Write(ctx, websocket.MessageText, []byte(create)); err != nil {
		t.Fatal(err)
	}
	evs := readUntil(t, c, "response.completed")
	all := strings.Join(evs, "\n")
	if strings.Contains(all, "AKIAIOSFODNN7EXAMPLQ") {
		t.Fatalf("secret split across deltas reached the client:\n%s", all)
	}
	if !strings.Contains(all, fmt.Sprintf(`"input_bytes":%d`, len(create))) {
		t.Errorf("upstream did not receive the whole %d-byte message: %s", len(create), evs[len(evs)-1])
	}

	// A blocked response.create gets an error event; the connection stays usable.
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"response.create","input":"please DROP TABLE users"}`)); err != nil {
		t.Fatal(err)
	}
	evs = readUntil(t, c, "error")
	var errEv struct {
		Error apiErrorBody `json:"error"`
	}
	json.Unmarshal([]byte(evs[len(evs)-1]), &errEv)
	if errEv.Error.Type != errPolicyViolation || errEv.Error.Code != "destructive-sql" {
		t.Fatalf("error event %s", evs[len(evs)-1])
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"response.create","input":"again","generate":false}`)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, "response.completed")
	c.Close(websocket.StatusNormalClosure, "")

	var forwarded, blocked, warmup int
	for _, r := range e.records() {
		if r.Conn.Transport != "websocket" {
			continue
		}
		switch {
		case r.Outcome == store.OutcomeForwarded && r.Extra["ws_event"] == "response.create":
			forwarded++
			if r.Extra["warmup"] == "true" {
				warmup++
			}
			if len(r.Deltas) < 4 || len(r.Rules) == 0 {
				t.Errorf("ws record lacks deltas or rules: %+v", r)
			}
		case r.Outcome == store.OutcomeBlocked:
			blocked++
		}
	}
	if forwarded != 2 || blocked != 1 || warmup != 1 {
		t.Errorf("records: %d forwarded, %d blocked, %d warm-up; want 2, 1, 1", forwarded, blocked, warmup)
	}
	assertNoSecretInDB(t, e, "AKIAIOSFODNN7EXAMPLQ", testRealKey, testRunnerToken)
}

func TestWebSocketRefusesUnknownRunner(t *testing.T) {
	e := newEnv(t, wsUpstream(t, make(chan string, 1)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "wss://api.openai.com/v1/responses", &websocket.DialOptions{
		HTTPClient: e.client, HTTPHeader: http.Header{"Authorization": {"Bearer nope"}},
	})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial with an unknown token: err %v, resp %v", err, resp)
	}
}

func TestWebSocketRefusesWhatItCannotRead(t *testing.T) {
	e := newEnv(t, wsUpstream(t, make(chan string, 1)), func(o *Options) {
		o.Policies = []identity.Policy{{Name: "human", Match: map[string]string{"runner": "*"}, Approve: "always"}}
	})
	c := dialWS(t, e, testRunnerToken)
	defer c.CloseNow()
	ctx := context.Background()
	for _, msg := range []string{
		`{"type":"response.create","input":"x","Type":"noop"}`, // read two ways
		`{"type":"response.create","x":NaN}`,                   // not JSON
		`["response.create"]`,                                  // not an object
		`{"input":"no type"}`,
	} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		evs := readUntil(t, c, "error")
		if !strings.Contains(evs[len(evs)-1], "invalid_event") {
			t.Errorf("%s: got %s", msg, evs[len(evs)-1])
		}
	}
	// Binary messages end the connection.
	if err := c.Write(ctx, websocket.MessageBinary, []byte(`{"type":"response.create"}`)); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, _, err := c.Read(rctx); websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Errorf("after a binary message: %v, want close 1003", err)
	}
	for _, r := range e.records() {
		if r.Conn.Transport == "websocket" && r.Outcome == store.OutcomeForwarded {
			t.Errorf("an unreadable event was forwarded: %+v", r)
		}
	}
}

func TestWebSocketApprovalKnowsTheRequester(t *testing.T) {
	q := approval.NewQueue(time.Minute)
	e := newEnv(t, wsUpstream(t, make(chan string, 1)), func(o *Options) {
		o.Approvals = q
		o.Policies = []identity.Policy{{Name: "human", Match: map[string]string{"runner": "*"}, Approve: "always"}}
	})
	c := dialWS(t, e, testRunnerToken)
	defer c.CloseNow()
	if err := c.Write(context.Background(), websocket.MessageText, []byte(`{"type":"response.create","input":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	p := waitPending(t, q, 1)
	if _, err := q.Decide(p[0].ID, approval.Approved, "ci-1", ""); err == nil {
		t.Fatal("runner ci-1 approved its own WebSocket request")
	}
	if _, err := q.Decide(p[0].ID, approval.Approved, "alice", ""); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, "response.completed")
}
