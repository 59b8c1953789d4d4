package web

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/approval"
)

// checkUIHeaders asserts the security headers every UI response carries.
func checkUIHeaders(t *testing.T, path string, resp *http.Response) {
	t.Helper()
	for h, want := range map[string]string{
		"Content-Security-Policy": contentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: %s = %q, want %q", path, h, got, want)
		}
	}
}

// inlineCode finds what must never be in a page (and what the
// Content-Security-Policy would block anyway): inline style, event handler
// attributes, javascript: URLs, and script elements other than
// <script src=...></script>.
var (
	inlineCode = regexp.MustCompile(`(?i)<style|<[a-z][^>]*\s(?:style|on[a-z]+)=|javascript:`)
	scriptTag  = regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`)
)

func findInlineCode(page string) string {
	if m := inlineCode.FindString(page); m != "" {
		return m
	}
	for _, m := range scriptTag.FindAllStringSubmatch(page, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			return m[0]
		}
	}
	if strings.Count(strings.ToLower(page), "<script") != len(scriptTag.FindAllString(page, -1)) {
		return "unterminated <script>"
	}
	return ""
}

func TestPagesNeedLogin(t *testing.T) {
	s := newTestServer(t)
	b := newBrowser(t, s.Server)
	for _, p := range []string{"/", "/sessions", "/sessions/1", "/sessions/1/replay", "/approvals"} {
		resp := b.req("GET", p, "")
		checkUIHeaders(t, p, resp)
		loc := resp.Header.Get("Location")
		if p == "/" {
			if resp.StatusCode != http.StatusSeeOther || loc != "/sessions" {
				t.Errorf("/: %d %q", resp.StatusCode, loc)
			}
			continue
		}
		if resp.StatusCode != http.StatusSeeOther || loc != "/login?next="+url.QueryEscape(p) {
			t.Errorf("%s: %d to %q", p, resp.StatusCode, loc)
		}
	}
	if resp := b.req("POST", "/approvals/x/approve", "reason=x"); resp.StatusCode != 401 {
		t.Errorf("POST without login: %d", resp.StatusCode)
	}
	resp := b.req("GET", "/login", "")
	checkUIHeaders(t, "/login", resp)
	page := readBody(t, resp)
	if !strings.Contains(page, `type="password"`) {
		t.Error("no password field on the login page")
	}
}

func TestPagesRenderSafely(t *testing.T) {
	s := newTestServer(t)
	held := s.hold(t, approval.Request{ID: "held1", Requester: "runner ci-1", RequesterName: "ci-1",
		Prompt: `please <script>alert(3)</script> [MASKED:openai-key]`, Method: "POST", Host: "api.openai.com", Path: "/v1/chat/completions"})
	b := newBrowser(t, s.Server)
	b.login(aliceToken)
	script := itoa(s.log.seq["script"])
	pages := map[string][]string{
		"/sessions": {`href="/sessions/` + script + `"`, "acme/api", "mallory"},
		"/sessions/" + script: {
			"&lt;script&gt;alert(1)&lt;/script&gt;",
			`<mark class="masked">[MASKED:openai-key]</mark>`,
			"&lt;img src=x onerror=alert(2)&gt;", // client-declared metadata, escaped
			"unverified",
			`id="verified"`, ">verified<",
			"I will not run &lt;b&gt;that&lt;/b&gt;.",
			"openai-key",
		},
		"/sessions/" + streamSession:                         {"Approval history", "looks fine", `id="replay-link"`, "one two three four five", "OPS-1"},
		"/sessions/" + itoa(s.log.seq["stream"]) + "/replay": {`data-seq="` + itoa(s.log.seq["stream"]) + `"`, "count to five", `id="play"`},
		"/approvals":      {`id="approval-held1"`, "&lt;script&gt;alert(3)&lt;/script&gt;", `<mark class="masked">[MASKED:openai-key]</mark>`, `name="csrf" value="` + b.csrf + `"`},
		"/static/app.js":  {"EventSource"},
		"/static/app.css": {"mark.masked"},
	}
	for p, wants := range pages {
		resp := b.req("GET", p, "")
		checkUIHeaders(t, p, resp)
		body := readBody(t, resp)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", p, resp.StatusCode)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", p, w)
			}
		}
		if strings.HasPrefix(p, "/static/") {
			continue
		}
		for _, bad := range []string{"<script>alert", "<img src=x", "<b>that"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains unescaped %q", p, bad)
			}
		}
		if m := findInlineCode(body); m != "" {
			t.Errorf("%s has inline code %q", p, m)
		}
	}
	b.req("POST", "/api/v1/approvals/held1/approve", `{}`, csrfHeader, b.csrf)
	<-held
}

func TestSessionsPageFiltersAndPages(t *testing.T) {
	s := newTestServer(t)
	b := newBrowser(t, s.Server)
	b.login(aliceToken)
	rows := regexp.MustCompile(`<tr class="record[^"]*" data-seq="(\d+)">`)
	seqs := func(body string) []string {
		var out []string
		for _, m := range rows.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	body := readBody(t, b.req("GET", "/sessions?repo=acme%2Fdocs", ""))
	if got := seqs(body); len(got) != 1 || got[0] != itoa(s.log.seq["other"]) {
		t.Errorf("repo filter rows %v", got)
	}
	if !strings.Contains(body, `value="acme/docs"`) {
		t.Error("the filter form does not keep the value")
	}
	body = readBody(t, b.req("GET", "/sessions?outcome=blocked", ""))
	if got := seqs(body); len(got) != 1 || got[0] != itoa(s.log.seq["blocked"]) || !strings.Contains(body, "<option selected>blocked</option>") {
		t.Errorf("outcome filter rows %v", got)
	}
	body = readBody(t, b.req("GET", "/sessions?rule=nothing", ""))
	if !strings.Contains(body, `id="no-records"`) {
		t.Error("no empty-state message")
	}
	resp := b.req("GET", "/sessions?since=whenever", "")
	if resp.StatusCode != 400 || !strings.Contains(readBody(t, resp), "neither a duration") {
		t.Errorf("bad filter: %d", resp.StatusCode)
	}
	// Paging: two at a time, following the "older" links.
	var all []string
	next := "/sessions?limit=2&kind=exchange"
	for i := 0; next != "" && i < 10; i++ {
		body := readBody(t, b.req("GET", next, ""))
		all = append(all, seqs(body)...)
		m := regexp.MustCompile(`href="([^"]+)" id="next-page"`).FindStringSubmatch(body)
		next = ""
		if m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	want := []string{itoa(s.log.seq["claude"]), itoa(s.log.seq["other"]), itoa(s.log.seq["blocked"]), itoa(s.log.seq["script"]), itoa(s.log.seq["stream"])}
	if strings.Join(all, ",") != strings.Join(want, ",") {
		t.Errorf("paged %v, want %v", all, want)
	}
}

func TestSessionPageErrors(t *testing.T) {
	s := newTestServer(t)
	b := newBrowser(t, s.Server)
	b.login(aliceToken)
	resp := b.req("GET", "/sessions/424242", "")
	if resp.StatusCode != 404 || !strings.Contains(readBody(t, resp), "No such session") {
		t.Errorf("unknown record: %d", resp.StatusCode)
	}
	// Without a verifier the badge says so.
	s2 := newTestServer(t, func(o *Options) { o.Verify = nil })
	b2 := newBrowser(t, s2.Server)
	b2.login(aliceToken)
	if body := readBody(t, b2.req("GET", "/sessions/1", "")); !strings.Contains(body, "verification not available") {
		t.Error("no 'not available' badge without a verifier")
	}
}

func TestApprovalFormsWithoutScript(t *testing.T) {
	s := newTestServer(t)
	b := newBrowser(t, s.Server)
	b.login(bobToken)
	held := s.hold(t, approval.Request{ID: "f1", Requester: "runner ci-1"})
	resp := b.req("POST", "/approvals/f1/deny", url.Values{"csrf": {b.csrf}, "reason": {""}}.Encode())
	if body := readBody(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "a denial needs a reason") {
		t.Errorf("deny without reason: %d", resp.StatusCode)
	}
	resp = b.req("POST", "/approvals/f1/approve", url.Values{"csrf": {b.csrf}}.Encode())
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/approvals?done=approved" {
		t.Fatalf("approve: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if d := <-held; d.Decision != approval.Approved || d.By != "bob" {
		t.Errorf("decision %+v", d)
	}
	if body := readBody(t, b.req("GET", "/approvals?done=approved", "")); !strings.Contains(body, "Approved.") || !strings.Contains(body, `id="no-approvals">`) {
		t.Errorf("inbox after approval: %s", body)
	}
}

func TestSegments(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []segment
	}{
		{"", nil},
		{"plain", []segment{{"plain", false}}},
		{"[MASKED:k]", []segment{{"[MASKED:k]", true}}},
		{"a [MASKED:aws-key] b [MASKED:x]", []segment{{"a ", false}, {"[MASKED:aws-key]", true}, {" b ", false}, {"[MASKED:x]", true}}},
		{"[MASKED:has space]", []segment{{"[MASKED:has space]", false}}},
		{"<script>[MASKED:k]</script>", []segment{{"<script>", false}, {"[MASKED:k]", true}, {"</script>", false}}},
	} {
		got := segments(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("segments(%q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("segments(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

func TestAnswerText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{strings.Join(streamEvents, ""), "one two three four five"},
		{`{"choices":[{"message":{"content":"hi"}}]}`, "hi"},
		{`{"output_text":"resp"}`, "resp"},
		{"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"a\"}\n\n" +
			"data: {\"type\":\"response.output_text.delta\",\"delta\":\"b\"}\n\ndata: {\"type\":\"response.completed\",\"delta\":\"x\"}\n\n", "ab"},
		{"not json at all", ""},
		// Anthropic Messages, streamed: thinking, text, a tool call.
		{"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"content\":[]}}\n\n" +
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}\n\n" +
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n" +
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"name\":\"bash\",\"input\":{}}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n" +
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", "[thinking] hmm\n\nHi\n\n[tool call bash] {\"a\":1}"},
		// Anthropic Messages, whole.
		{`{"type":"message","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"Hi"},{"type":"tool_use","name":"bash","input":{"a":1}}]}`,
			"[thinking] hmm\n\nHi\n\n[tool call bash] {\"a\":1}"},
		{"data: {broken\n\n", ""},
	} {
		if got := answerText([]byte(tc.in)); got != tc.want {
			t.Errorf("answerText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzSegments(f *testing.F) {
	for _, s := range []string{"", "[MASKED:a]", "x[MASKED:]y", "[MASKED:" + strings.Repeat("a", 300) + "]", "\xff[MASKED:k]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b strings.Builder
		for _, seg := range segments(s) {
			if seg.Masked && !maskedSpan.MatchString(seg.Text) {
				t.Fatalf("segment %q marked masked", seg.Text)
			}
			b.WriteString(seg.Text)
		}
		if b.String() != s {
			t.Fatalf("segments of %q join to %q", s, b.String())
		}
	})
}

func FuzzAnswerText(f *testing.F) {
	f.Add([]byte(strings.Join(streamEvents, "")))
	f.Add([]byte(`{"choices":[{"message":{"content":"hi"}}]}`))
	f.Add([]byte("data: {\"delta\":5,\"type\":\"x.delta\"}\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		answerText(b) // must not panic
	})
}
