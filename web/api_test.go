package web

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

func decodeJSON[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

func TestHealthAndMetricsNeedNoToken(t *testing.T) {
	s := newTestServer(t)
	resp := s.do(t, "GET", "/healthz", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	if got := decodeJSON[map[string]string](t, resp); got["status"] != "ok" {
		t.Errorf("/healthz: %v", got)
	}
	resp = s.do(t, "GET", "/metrics", "", "")
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "sessctl_up 1") {
		t.Errorf("/metrics: %d %q", resp.StatusCode, b)
	}
}

func TestAPIAuth(t *testing.T) {
	s := newTestServer(t)
	for _, tc := range []struct {
		name   string
		header string
		want   int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer sct_admin_mallory_000000000000", 401},
		{"runner-looking token", "Bearer " + strings.Repeat("a", 40), 401},
		{"basic auth", "Basic YWxpY2U6" + aliceToken, 401},
		{"empty bearer", "Bearer ", 401},
		{"token in clear config", "Bearer " + aliceToken, 200},
		{"token_sha256 config", "Bearer " + bobToken, 200},
		{"lower-case scheme", "bearer " + bobToken, 200},
	} {
		for _, path := range []string{"/api/v1/sessions", "/api/v1/approvals", "/api/v1/sessions/1", "/api/v1/export"} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				var hdr []string
				if tc.header != "" {
					hdr = []string{"Authorization", tc.header}
				}
				resp := s.do(t, "GET", path, "", "", hdr...)
				if resp.StatusCode != tc.want {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
				}
				if tc.want == 401 {
					if resp.Header.Get("WWW-Authenticate") == "" {
						t.Error("401 without WWW-Authenticate")
					}
					e := decodeJSON[admin.APIError](t, resp)
					if e.Error == "" || strings.Contains(e.Error, aliceToken) {
						t.Errorf("error body %q", e.Error)
					}
				}
			})
		}
	}
	// A POST without a credential is refused before anything else.
	if resp := s.do(t, "POST", "/api/v1/approvals/x/approve", "", `{}`); resp.StatusCode != 401 {
		t.Errorf("unauthenticated POST: %d", resp.StatusCode)
	}
}

func TestAPIDisabledWithoutAdminTokens(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.AdminTokens = nil })
	resp := s.do(t, "GET", "/api/v1/sessions", aliceToken, "")
	if resp.StatusCode != 401 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if e := decodeJSON[admin.APIError](t, resp); !strings.Contains(e.Error, "admin_tokens") {
		t.Errorf("error %q does not say how to enable the API", e.Error)
	}
	// A bad admin token disables the API rather than letting anyone in.
	s = newTestServer(t, func(o *Options) {
		o.AdminTokens = []identity.Runner{{Name: "alice", Token: aliceToken}, {Name: "eve", TokenSHA256: "zz"}}
	})
	if resp := s.do(t, "GET", "/api/v1/sessions", aliceToken, ""); resp.StatusCode != 401 {
		t.Errorf("with a malformed admin token: %d", resp.StatusCode)
	}
	if resp := s.do(t, "GET", "/healthz", "", ""); resp.StatusCode != 200 {
		t.Errorf("/healthz with a malformed admin token: %d", resp.StatusCode)
	}
}

func (s *testServer) names(seqs []uint64) []string {
	var out []string
	for _, q := range seqs {
		name := "?"
		for n, v := range s.log.seq {
			if v == q {
				name = n
			}
		}
		if q == 0 {
			name = "genesis"
		}
		out = append(out, name)
	}
	return out
}

func seqsOf(recs []*store.Record) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

func TestAPISessionFilters(t *testing.T) {
	s := newTestServer(t)
	for _, tc := range []struct {
		query string
		want  []string // newest first
	}{
		{"repo=acme/api", []string{"script", "stream", "stream-approval"}},
		{"repo=acme/api&run=8812", []string{"stream", "stream-approval"}},
		{"run=8812&kind=exchange", []string{"stream"}},
		{"sha=0123456789abcdef0123456789abcdef01234567", []string{"stream", "stream-approval"}},
		{"sha=0123456", []string{"stream", "stream-approval"}},
		{"sha=012", nil}, // too short to be an abbreviation
		{"actor=mallory", []string{"script"}},
		{"actor=octocat&repo=acme/docs", []string{"other"}},
		{"outcome=blocked", []string{"blocked"}},
		{"outcome=unauthenticated", []string{"refused"}},
		{"rule=aws-key", []string{"blocked"}},
		{"rule=openai-key", []string{"script"}},
		{"rule=nope", nil},
		{"runner=ci-1", []string{"blocked"}},
		{"host=api.openai.com&kind=refused", []string{"refused"}},
		{"session=" + streamSession, []string{"stream", "stream-approval"}},
		{"since=" + url.QueryEscape(t0.Add(90*time.Second).Format(time.RFC3339)) + "&until=" + url.QueryEscape(t0.Add(3*time.Minute).Format(time.RFC3339)), []string{"blocked"}},
		{"since=" + url.QueryEscape(t0.Add(3*time.Minute).Format(time.RFC3339)) + "&repo=acme/docs", []string{"other"}},
		{"repo=acme/api&limit=1", []string{"script"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp := s.do(t, "GET", "/api/v1/sessions?"+tc.query, aliceToken, "")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := decodeJSON[admin.SessionList](t, resp)
			if names := s.names(seqsOf(got.Sessions)); !slices.Equal(names, tc.want) {
				t.Errorf("got %v, want %v", names, tc.want)
			}
		})
	}
	for _, bad := range []string{"since=yesterday", "until=-5h", "limit=-1", "limit=x", "after=nope"} {
		if resp := s.do(t, "GET", "/api/v1/sessions?"+bad, aliceToken, ""); resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestAPISessionPaging(t *testing.T) {
	s := newTestServer(t)
	var all []uint64
	resp := s.do(t, "GET", "/api/v1/sessions?limit=100", aliceToken, "")
	for _, r := range decodeJSON[admin.SessionList](t, resp).Sessions {
		all = append(all, r.Seq)
	}
	if len(all) < 7 {
		t.Fatalf("only %d records", len(all))
	}
	var paged []uint64
	after := ""
	for pages := 0; ; pages++ {
		if pages > len(all) {
			t.Fatal("paging does not end")
		}
		q := url.Values{"limit": {"2"}}
		if after != "" {
			q.Set("after", after)
		}
		l := decodeJSON[admin.SessionList](t, s.do(t, "GET", "/api/v1/sessions?"+q.Encode(), aliceToken, ""))
		paged = append(paged, seqsOf(l.Sessions)...)
		if l.Next == "" {
			break
		}
		after = l.Next
	}
	if !slices.Equal(paged, all) {
		t.Errorf("paged %v, listed %v", paged, all)
	}
}

func TestAPISessionDetail(t *testing.T) {
	s := newTestServer(t)
	for _, id := range []string{streamSession, "2"} {
		resp := s.do(t, "GET", "/api/v1/sessions/"+id, aliceToken, "")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", id, resp.StatusCode)
		}
		d := decodeJSON[query.SessionDetail](t, resp)
		if d.Seq != s.log.seq["stream"] || d.Prompt == nil || *d.Prompt != streamPrompt || d.Answer == nil || !strings.HasPrefix(*d.Answer, "data: ") {
			t.Fatalf("%s: %+v", id, d)
		}
		if len(d.Deltas) != len(streamEvents) {
			t.Errorf("%d deltas", len(d.Deltas))
		}
		if len(d.Related) != 1 || d.Related[0].Kind != store.KindApproval {
			t.Errorf("related: %+v", d.Related)
		}
		if d.Verified == nil || !*d.Verified {
			t.Errorf("verified = %v (%s)", d.Verified, d.VerifyError)
		}
	}
	if resp := s.do(t, "GET", "/api/v1/sessions/99999", aliceToken, ""); resp.StatusCode != 404 {
		t.Errorf("unknown record: %d", resp.StatusCode)
	}
	if resp := s.do(t, "GET", "/api/v1/sessions/no-such-session", aliceToken, ""); resp.StatusCode != 404 {
		t.Errorf("unknown session: %d", resp.StatusCode)
	}
	// A metadata-only record has no bodies.
	d := decodeJSON[query.SessionDetail](t, s.do(t, "GET", "/api/v1/sessions/"+itoa(s.log.seq["other"]), aliceToken, ""))
	if d.Prompt != nil || d.Answer != nil {
		t.Errorf("metadata record has bodies: %+v", d)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestAPIAnswerBytes(t *testing.T) {
	s := newTestServer(t)
	resp := s.do(t, "GET", "/api/v1/sessions/"+streamSession+"/answer", aliceToken, "")
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != strings.Join(streamEvents, "") {
		t.Fatalf("status %d body %q", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("content type %q", ct)
	}
	if resp := s.do(t, "GET", "/api/v1/sessions/"+itoa(s.log.seq["other"])+"/answer", aliceToken, ""); resp.StatusCode != 404 {
		t.Errorf("no answer: %d", resp.StatusCode)
	}
}

func TestAPIApproveAndDeny(t *testing.T) {
	s := newTestServer(t)
	held := s.hold(t, approval.Request{ID: "req-approve", Requester: "runner ci-1", RequesterName: "ci-1", Host: "api.openai.com", Prompt: "hello"})
	list := decodeJSON[admin.ApprovalList](t, s.do(t, "GET", "/api/v1/approvals", aliceToken, ""))
	if len(list.Approvals) != 1 || list.Approvals[0].ID != "req-approve" {
		t.Fatalf("pending: %+v", list)
	}
	if got := decodeJSON[approval.Request](t, s.do(t, "GET", "/api/v1/approvals/req-approve", bobToken, "")); got.Prompt != "hello" {
		t.Errorf("get: %+v", got)
	}
	if resp := s.do(t, "GET", "/api/v1/approvals/nope", bobToken, ""); resp.StatusCode != 404 {
		t.Errorf("get unknown: %d", resp.StatusCode)
	}
	resp := s.do(t, "POST", "/api/v1/approvals/req-approve/approve", aliceToken, `{"reason":"ok for the release"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	d := decodeJSON[approval.Decision](t, resp)
	if d.Decision != approval.Approved || d.By != "alice" || d.Reason != "ok for the release" {
		t.Errorf("decision %+v", d)
	}
	if got := <-held; got.Decision != approval.Approved || got.By != "alice" {
		t.Errorf("Hold returned %+v", got)
	}
	if resp := s.do(t, "POST", "/api/v1/approvals/req-approve/deny", bobToken, `{"reason":"too late"}`); resp.StatusCode != 409 {
		t.Errorf("deciding twice: %d", resp.StatusCode)
	}

	held = s.hold(t, approval.Request{ID: "req-deny", Requester: "runner ci-1", RequesterName: "ci-1"})
	for _, body := range []string{"", `{}`, `{"reason":"  "}`} {
		if resp := s.do(t, "POST", "/api/v1/approvals/req-deny/deny", bobToken, body); resp.StatusCode != 400 {
			t.Errorf("deny with body %q: %d", body, resp.StatusCode)
		}
	}
	if resp := s.do(t, "POST", "/api/v1/approvals/req-deny/deny", bobToken, `{"reason":`); resp.StatusCode != 400 {
		t.Errorf("malformed body: %d", resp.StatusCode)
	}
	if resp := s.do(t, "POST", "/api/v1/approvals/req-deny/deny", bobToken, `{"reason":"prompt leaks data"}`); resp.StatusCode != 200 {
		t.Errorf("deny: %d", resp.StatusCode)
	}
	if got := <-held; got.Decision != approval.Denied || got.By != "bob" || got.Reason != "prompt leaks data" {
		t.Errorf("Hold returned %+v", got)
	}

	// An admin whose name is the requester's cannot decide.
	held = s.hold(t, approval.Request{ID: "req-self", Requester: "oidc repo:acme/api", RequesterName: "alice"})
	if resp := s.do(t, "POST", "/api/v1/approvals/req-self/approve", aliceToken, `{}`); resp.StatusCode != 403 {
		t.Errorf("self-approval: %d", resp.StatusCode)
	}
	if resp := s.do(t, "POST", "/api/v1/approvals/req-self/approve", bobToken, ``); resp.StatusCode != 200 {
		t.Errorf("approval by another admin: %d", resp.StatusCode)
	}
	if got := <-held; got.By != "bob" {
		t.Errorf("Hold returned %+v", got)
	}
	if resp := s.do(t, "POST", "/api/v1/approvals/unknown/approve", aliceToken, `{}`); resp.StatusCode != 404 {
		t.Errorf("unknown id: %d", resp.StatusCode)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

func readEvents(t *testing.T, body io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	return ch
}

func TestAPIApprovalStream(t *testing.T) {
	s := newTestServer(t)
	first := s.hold(t, approval.Request{ID: "before", Requester: "runner ci-1"})
	resp := s.do(t, "GET", "/api/v1/approvals/stream", aliceToken, "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readEvents(t, resp.Body)
	ev := <-events
	if ev.name != "pending" || !strings.Contains(ev.data, `"before"`) {
		t.Fatalf("first event %+v", ev)
	}
	second := s.hold(t, approval.Request{ID: "after", Requester: "runner ci-2"})
	if ev := <-events; ev.name != "held" || !strings.Contains(ev.data, `"after"`) {
		t.Fatalf("held event %+v", ev)
	}
	s.do(t, "POST", "/api/v1/approvals/after/deny", aliceToken, `{"reason":"no"}`)
	ev = <-events
	var got approval.Event
	if err := json.Unmarshal([]byte(ev.data), &got); err != nil || ev.name != "decided" || got.Decision == nil || got.Decision.Decision != approval.Denied || got.Decision.By != "alice" {
		t.Fatalf("decided event %+v (%v)", ev, err)
	}
	<-second
	s.do(t, "POST", "/api/v1/approvals/before/approve", bobToken, ``)
	<-first
}

func TestAPIUnknownEndpoint(t *testing.T) {
	s := newTestServer(t)
	if resp := s.do(t, "GET", "/api/v1/nothing", aliceToken, ""); resp.StatusCode != 404 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if resp := s.do(t, "DELETE", "/api/v1/sessions/1", aliceToken, ""); resp.StatusCode != 405 && resp.StatusCode != 404 {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
}

func TestAPIWithoutStoreOrQueue(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.Sessions, o.Approvals = nil, nil })
	for _, p := range []string{"/api/v1/sessions", "/api/v1/sessions/1", "/api/v1/approvals", "/api/v1/approvals/stream", "/api/v1/export"} {
		if resp := s.do(t, "GET", p, aliceToken, ""); resp.StatusCode != 503 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}
