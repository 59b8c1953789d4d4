package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// Admin tokens used by the tests.
const (
	aliceToken = "sct_admin_alice_0123456789abcdef"
	bobToken   = "sct_admin_bob_0123456789abcdef"
)

var testAdmins = []identity.Runner{
	{Name: "alice", Token: aliceToken},
	{Name: "bob", TokenSHA256: identity.HashToken(bobToken)},
}

// t0 is when the recorded test sessions start.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

// Prompts and answers of the test log.
const (
	scriptPrompt = `{"model":"gpt-4o","messages":[{"role":"user","content":"<script>alert(1)</script> and key [MASKED:openai-key]"}]}`
	streamPrompt = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"count to five"}]}`
)

// streamEvents are the SSE events of the streamed test answer, one delta
// each.
var streamEvents = []string{
	`data: {"choices":[{"delta":{"role":"assistant","content":""}}]}` + "\n\n",
	`data: {"choices":[{"delta":{"content":"one "}}]}` + "\n\n",
	`data: {"choices":[{"delta":{"content":"two "}}]}` + "\n\n",
	`data: {"choices":[{"delta":{"content":"three "}}]}` + "\n\n",
	`data: {"choices":[{"delta":{"content":"four "}}]}` + "\n\n",
	`data: {"choices":[{"delta":{"content":"five"}}]}` + "\n\n",
	"data: [DONE]\n\n",
}

// claudeEvents are the SSE events of a streamed Claude answer: thinking,
// text, then a tool call.
var claudeEvents = []string{
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Listing files.\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBsig==\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"I will run ls.\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"bash\",\"input\":{}}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"command\\\": \\\"ls\\\"}\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":30}}\n\n",
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
}

// claudeText is the replayed text of claudeEvents.
const claudeText = "[thinking] Listing files.\n\nI will run ls.\n\n[tool call bash] {\"command\": \"ls\"}"

// streamSession is the session id of the streamed exchange, which also has
// an approval record.
const streamSession = "01956b7e-0000-7000-8000-000000000001"

// testLog is a real store with recorded sessions.
type testLog struct {
	st   *store.Store
	path string
	// seqs by name: genesis, stream, approval, script, blocked, other,
	// claude, refused.
	seq map[string]uint64
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestLog creates a store in a temporary directory and appends the test
// sessions. deltaGap is the recorded time between two deltas of the
// streamed answer.
func newTestLog(t testing.TB, deltaGap time.Duration) *testLog {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "sessions.db")
	st, err := store.Open(path, store.Options{NoSync: true, CheckpointEvery: 1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l := &testLog{st: st, path: path, seq: map[string]uint64{}}

	var answer strings.Builder
	var deltas []store.Delta
	for i, ev := range streamEvents {
		answer.WriteString(ev)
		deltas = append(deltas, store.Delta{OffsetMS: int64(200 + i*int(deltaGap/time.Millisecond)), Size: len(ev)})
	}
	var claude strings.Builder
	var claudeDeltas []store.Delta
	for i, ev := range claudeEvents {
		claude.WriteString(ev)
		claudeDeltas = append(claudeDeltas, store.Delta{OffsetMS: int64(100 + i*20), Size: len(ev)})
	}
	gh := func(repo, run, sha, actor string) store.Identity {
		return store.Identity{Method: "oidc", Issuer: "https://token.actions.githubusercontent.com",
			Subject: "repo:" + repo + ":ref:refs/heads/main", TokenHash: strings.Repeat("ab", 32), Policy: "acme",
			Claims: map[string]string{"repository": repo, "repository_owner": "acme", "run_id": run, "sha": sha, "actor": actor, "workflow": "agent"}}
	}
	recs := []struct {
		name string
		r    store.Record
	}{
		{"stream-approval", store.Record{Kind: store.KindApproval, SessionID: streamSession, Start: t0.Add(time.Second),
			Identity: gh("acme/api", "8812", "0123456789abcdef0123456789abcdef01234567", "octocat"),
			Host:     "api.openai.com", Method: "POST", Path: "/v1/chat/completions",
			Outcome:  store.OutcomePending,
			Approval: &store.Approval{ID: "appr1", Decision: "approved", By: "alice", At: t0.Add(2 * time.Second), Reason: "looks fine"}}},
		{"stream", store.Record{Kind: store.KindExchange, SessionID: streamSession, Start: t0.Add(2 * time.Second), End: t0.Add(5 * time.Second),
			Identity: gh("acme/api", "8812", "0123456789abcdef0123456789abcdef01234567", "octocat"),
			Meta:     map[string]string{"ticket": "OPS-1"},
			Conn:     store.Conn{ID: "c1", Mode: "explicit", Client: "10.0.0.7:40000", Transport: "http"},
			Host:     "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200,
			Outcome: store.OutcomeForwarded, Recording: store.RecordingFull,
			Rules:       []store.RuleHit{{Name: "needs-approval", Action: "approve", Scope: "request", Count: 1}},
			Approval:    &store.Approval{ID: "appr1", Decision: "approved", By: "alice", At: t0.Add(2 * time.Second), Reason: "looks fine"},
			Deltas:      deltas,
			RequestBody: []byte(streamPrompt), ResponseBody: []byte(answer.String())}},
		{"script", store.Record{Kind: store.KindExchange, SessionID: "01956b7e-0000-7000-8000-000000000002", Start: t0.Add(time.Minute), End: t0.Add(time.Minute + time.Second),
			Identity: gh("acme/api", "8813", "fedcba9876543210fedcba9876543210fedcba98", "mallory"),
			Meta:     map[string]string{"note": "<img src=x onerror=alert(2)>"},
			Host:     "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200,
			Outcome: store.OutcomeForwarded, Recording: store.RecordingFull,
			Rules:       []store.RuleHit{{Name: "openai-key", Action: "mask", Scope: "request", Count: 1}},
			RequestBody: []byte(scriptPrompt), ResponseBody: []byte(`{"choices":[{"message":{"role":"assistant","content":"I will not run <b>that</b>."}}]}`)}},
		{"blocked", store.Record{Kind: store.KindExchange, SessionID: "01956b7e-0000-7000-8000-000000000003", Start: t0.Add(2 * time.Minute), End: t0.Add(2 * time.Minute),
			Identity: store.Identity{Method: "runner_token", Runner: "ci-1", TokenHash: strings.Repeat("cd", 32)},
			Host:     "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Status: 403,
			Outcome: store.OutcomeBlocked, Reason: "rule aws-key blocks the prompt",
			Rules:       []store.RuleHit{{Name: "aws-key", Action: "block", Scope: "request", Count: 1}},
			RequestBody: []byte(`{"messages":[{"role":"user","content":"[MASKED:aws-key]"}]}`)}},
		{"other", store.Record{Kind: store.KindExchange, SessionID: "01956b7e-0000-7000-8000-000000000004", Start: t0.Add(3 * time.Minute), End: t0.Add(3 * time.Minute),
			Identity: gh("acme/docs", "9001", "1111111111111111111111111111111111111111", "octocat"),
			Host:     "api.openai.com", Method: "POST", Path: "/v1/embeddings", Model: "text-embedding-3-small", Status: 200,
			Outcome: store.OutcomeForwarded, Recording: store.RecordingMetadata}},
		{"claude", store.Record{Kind: store.KindExchange, SessionID: "01956b7e-0000-7000-8000-000000000005", Start: t0.Add(3*time.Minute + 30*time.Second), End: t0.Add(3*time.Minute + 31*time.Second),
			Identity: store.Identity{Method: "runner_token", Runner: "claude-ci", TokenHash: strings.Repeat("ef", 32)},
			Host:     "api.anthropic.com", Provider: "anthropic", Method: "POST", Path: "/v1/messages", Model: "claude-sonnet-4-5", Status: 200,
			Outcome: store.OutcomeForwarded, Recording: store.RecordingFull, Deltas: claudeDeltas,
			RequestBody:  []byte(`{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"list the files"}]}`),
			ResponseBody: []byte(claude.String())}},
		{"refused", store.Record{Kind: store.KindRefused, Start: t0.Add(4 * time.Minute),
			Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Status: 401,
			Outcome: store.OutcomeUnauthenticated, Reason: "missing credential"}},
	}
	for _, rc := range recs {
		r := rc.r
		if _, err := st.Append(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
		l.seq[rc.name] = r.Seq
	}
	return l
}

// waitCheckpoint waits until the newest record is covered by a signed
// checkpoint (the store writes one after each append here).
func (l *testLog) waitCheckpoint(t testing.TB) {
	t.Helper()
	last := l.seq["refused"]
	testutil.WaitFor(t, 5*time.Second, "a checkpoint covering the test records", func() bool {
		_, err := l.st.Prove(last)
		return err == nil
	})
}

// testServer runs the admin handler on a real loopback listener.
type testServer struct {
	*httptest.Server
	log   *testLog
	queue *approval.Queue
}

func newTestServer(t testing.TB, opts ...func(*Options)) *testServer {
	t.Helper()
	return newTestServerGap(t, 50*time.Millisecond, opts...)
}

// newTestServerGap is newTestServer with deltaGap between the recorded
// deltas of the streamed answer.
func newTestServerGap(t testing.TB, deltaGap time.Duration, opts ...func(*Options)) *testServer {
	t.Helper()
	l := newTestLog(t, deltaGap)
	l.waitCheckpoint(t)
	q := approval.NewQueue(time.Minute)
	o := Options{
		Health:      l.st.Healthy,
		Metrics:     func(w io.Writer) error { _, err := io.WriteString(w, "sessctl_up 1\n"); return err },
		Logger:      quietLogger(),
		Sessions:    l.st,
		Approvals:   q,
		AdminTokens: testAdmins,
		Verify:      query.ProofVerifier(l.st, l.st.PublicKey()),
	}
	for _, f := range opts {
		f(&o)
	}
	srv := httptest.NewServer(NewHandler(o))
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, log: l, queue: q}
}

// do sends a request with an optional bearer token and body.
func (s *testServer) do(t testing.TB, method, path, token, body string, hdr ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// hold puts a request in the queue from a goroutine, as the proxy does,
// and returns a channel with its decision.
func (s *testServer) hold(t testing.TB, r approval.Request) <-chan approval.Decision {
	t.Helper()
	ch := make(chan approval.Decision, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events := s.queue.Subscribe(ctx)
	go func() {
		d, _ := s.queue.Hold(ctx, r)
		ch <- d
	}()
	for ev := range events {
		if ev.Type == approval.EventHeld && ev.Request.ID == r.ID {
			return ch
		}
	}
	t.Fatal("the request was never held")
	return nil
}
