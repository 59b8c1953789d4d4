package web

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/internal/testutil"
)

// chromiumPath finds Debian's chromium; CHROMIUM overrides it.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// pageEvents collects what must not happen on a page: dialogs, script
// exceptions, Content-Security-Policy violations.
type pageEvents struct {
	mu         sync.Mutex
	dialogs    []string
	exceptions []string
	violations []string
}

func (p *pageEvents) problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, d := range p.dialogs {
		out = append(out, "dialog: "+d)
	}
	for _, e := range p.exceptions {
		out = append(out, "exception: "+e)
	}
	for _, v := range p.violations {
		out = append(out, "CSP: "+v)
	}
	return out
}

// newBrowserContext starts headless Chromium with a fresh profile and
// returns a chromedp context, the page's event collector, and a step
// runner that fails the test with a screenshot saved on error.
func newBrowserContext(t *testing.T) (context.Context, *pageEvents) {
	exe := chromiumPath()
	if exe == "" {
		t.Skip("no chromium: install Debian's chromium package (apt-get install chromium) to run the browser test")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium (%s): %v", exe, err)
	}
	ev := &pageEvents{}
	dialogs := make(chan struct{}, 16)
	err := chromedp.Listen(ctx, func(e any) {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		switch e := e.(type) {
		case *page.EventJavascriptDialogOpening:
			ev.dialogs = append(ev.dialogs, string(e.Type)+": "+e.Message)
			select {
			case dialogs <- struct{}{}:
			default:
			}
		case *runtime.EventExceptionThrown:
			ev.exceptions = append(ev.exceptions, e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			if strings.Contains(e.Entry.Text, "Content Security Policy") {
				ev.violations = append(ev.violations, e.Entry.Text)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// A dialog would block the page; dismiss it (the test fails anyway).
	go func() {
		for range dialogs {
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	// On failure, keep a screenshot of the page (web/testdata/output is
	// git-ignored).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("screenshot: %v", err)
			return
		}
		dir := filepath.Join("testdata", "output")
		os.MkdirAll(dir, 0o755)
		name := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+".png")
		if err := os.WriteFile(name, png, 0o644); err == nil {
			t.Logf("screenshot saved to web/%s", name)
		}
	})
	return ctx, ev
}

// step runs browser actions with a deadline and fails the test on error.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// shot saves a screenshot of the page under web/testdata/output when
// SESSCTL_SCREENSHOTS is set, for a person to look at the UI.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("SESSCTL_SCREENSHOTS") == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := filepath.Join("testdata", "output")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

func TestBrowser(t *testing.T) {
	if chromiumPath() == "" {
		t.Skip("no chromium: install Debian's chromium package (apt-get install chromium) to run the browser test")
	}
	// 250 ms between recorded deltas: the replay takes about 2 s at 1x.
	// The server starts first so that it closes last, after the browser
	// has dropped its event stream.
	s := newTestServerGap(t, 250*time.Millisecond)
	ctx, events := newBrowserContext(t)
	l := s.log
	base := s.URL
	stream, script := itoa(l.seq["stream"]), itoa(l.seq["script"])

	t.Run("login", func(t *testing.T) {
		step(t, ctx, "open the sessions page",
			chromedp.Navigate(base+"/sessions"),
			chromedp.WaitVisible(chromedp.CSS("#token")),
		)
		if loc := eval[string](t, ctx, `location.pathname + location.search`); loc != "/login?next=%2Fsessions" {
			t.Errorf("redirected to %q", loc)
		}
		step(t, ctx, "log in",
			chromedp.SendKeys(chromedp.CSS("#token"), aliceToken),
			chromedp.Click(chromedp.CSS("#login-submit")),
			chromedp.WaitVisible(chromedp.CSS("#filters")),
		)
		if eval[bool](t, ctx, `document.cookie.includes("sessctl_session")`) {
			t.Error("the session cookie is readable from script (not HttpOnly)")
		}
		if strings.Contains(eval[string](t, ctx, `location.href`), aliceToken) {
			t.Error("token in the URL")
		}
	})

	t.Run("filter", func(t *testing.T) {
		step(t, ctx, "filter by repository and run",
			chromedp.SetValue(chromedp.CSS(`#filters input[name="repo"]`), "acme/api"),
			chromedp.SetValue(chromedp.CSS(`#filters input[name="run"]`), "8812"),
			chromedp.Click(chromedp.CSS("#filter-submit")),
			// The unfiltered list shows the same row: wait until a row
			// the filter excludes (the genesis record) is gone.
			chromedp.WaitNotPresent(chromedp.CSS(`#records tr[data-seq="0"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#records tr[data-seq="`+stream+`"]`)),
		)
		rows := eval[[]string](t, ctx, `[...document.querySelectorAll("#records tr.record")].map(r => r.dataset.seq)`)
		shot(t, ctx, "sessions")
		want := []string{stream, itoa(l.seq["stream-approval"])}
		if strings.Join(rows, ",") != strings.Join(want, ",") {
			t.Errorf("rows %v, want %v", rows, want)
		}
	})

	t.Run("session page", func(t *testing.T) {
		step(t, ctx, "open the streamed session",
			chromedp.Click(chromedp.CSS(`#records a[href="/sessions/`+stream+`"]`)),
			chromedp.WaitVisible(chromedp.CSS("#identity")),
		)
		shot(t, ctx, "session")
		if got := eval[string](t, ctx, `document.querySelector("#verified").textContent.trim()`); got != "verified" {
			t.Errorf("badge %q", got)
		}
		if got := eval[string](t, ctx, `document.querySelector("#approval-history").textContent`); !strings.Contains(got, "looks fine") || !strings.Contains(got, "alice") {
			t.Errorf("approval history %q", got)
		}
		if got := eval[string](t, ctx, `document.querySelector("#meta").textContent`); !strings.Contains(got, "OPS-1") {
			t.Errorf("unverified metadata %q", got)
		}
	})

	t.Run("script prompt is text", func(t *testing.T) {
		step(t, ctx, "open the session with a script in its prompt",
			chromedp.Navigate(base+"/sessions/"+script),
			chromedp.WaitVisible(chromedp.CSS("#prompt")),
		)
		shot(t, ctx, "script-session")
		if got := eval[string](t, ctx, `document.querySelector("#prompt").textContent`); !strings.Contains(got, "<script>alert(1)</script>") {
			t.Errorf("prompt text %q", got)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll("main script, main img").length`); n != 0 {
			t.Errorf("%d script or img elements made from recorded data", n)
		}
		if got := eval[[]string](t, ctx, `[...document.querySelectorAll("#prompt mark.masked")].map(m => m.textContent)`); len(got) != 1 || got[0] != "[MASKED:openai-key]" {
			t.Errorf("masked spans %v", got)
		}
		if got := eval[string](t, ctx, `document.querySelector("#meta").textContent`); !strings.Contains(got, "<img src=x onerror=alert(2)>") {
			t.Errorf("metadata text %q", got)
		}
	})

	t.Run("claude replay", func(t *testing.T) {
		claude := itoa(l.seq["claude"])
		step(t, ctx, "open the Claude session",
			chromedp.Navigate(base+"/sessions/"+claude),
			chromedp.WaitVisible(chromedp.CSS("#identity")),
		)
		if got := eval[string](t, ctx, `document.querySelector("main").textContent`); !strings.Contains(got, "anthropic") || !strings.Contains(got, "[tool call bash]") {
			t.Errorf("the session page shows neither provider nor tool call: %.400q", got)
		}
		step(t, ctx, "replay it",
			chromedp.Navigate(base+"/sessions/"+claude+"/replay"),
			chromedp.WaitVisible(chromedp.CSS(`#replay[data-state="ready"]`)),
			chromedp.Click(chromedp.CSS("#play")),
			chromedp.WaitVisible(chromedp.CSS(`#replay[data-state="done"]`)),
		)
		shot(t, ctx, "claude-replay")
		if got := eval[string](t, ctx, `document.querySelector("#replay-text").textContent`); got != claudeText {
			t.Errorf("Claude replay text %q, want %q", got, claudeText)
		}
	})

	t.Run("replay", func(t *testing.T) {
		step(t, ctx, "open the replay",
			chromedp.Navigate(base+"/sessions/"+stream+"/replay"),
			chromedp.WaitVisible(chromedp.CSS(`#replay[data-state="ready"]`)),
		)
		if got := eval[string](t, ctx, `document.querySelector("#prompt").textContent`); !strings.Contains(got, "count to five") {
			t.Errorf("prompt %q", got)
		}
		step(t, ctx, "play", chromedp.Click(chromedp.CSS("#play")))
		// Watch the text grow until the replay ends.
		var seen []string
		testutil.WaitFor(t, 30*time.Second, "the replay to end", func() bool {
			st := eval[[]string](t, ctx, `[document.querySelector("#replay").dataset.state, document.querySelector("#replay-text").textContent]`)
			if len(seen) == 0 || seen[len(seen)-1] != st[1] {
				seen = append(seen, st[1])
			}
			return st[0] == "done"
		})
		shot(t, ctx, "replay")
		final := "one two three four five"
		if len(seen) == 0 || seen[len(seen)-1] != final {
			t.Fatalf("replay ended with %q", seen)
		}
		var partial int
		for _, s := range seen[:len(seen)-1] {
			if !strings.HasPrefix(final, s) {
				t.Errorf("intermediate text %q is not a prefix of the answer", s)
			}
			if s != "" {
				partial++
			}
		}
		if partial < 2 {
			t.Errorf("the text did not appear progressively: %q", seen)
		}
		if raw := eval[string](t, ctx, `document.querySelector("#replay-raw").textContent`); !strings.Contains(raw, "data: [DONE]") {
			t.Errorf("raw stream %q", raw)
		}

		// Pause stops the clock; play resumes; a faster speed finishes.
		step(t, ctx, "restart and pause",
			chromedp.Click(chromedp.CSS("#restart")),
			chromedp.Click(chromedp.CSS("#play")),
			chromedp.Poll[chromedp.Void](`document.querySelector("#replay-text").textContent.length > 0`),
			chromedp.Click(chromedp.CSS("#play")),
		)
		paused := eval[[]string](t, ctx, `[document.querySelector("#replay").dataset.state, document.querySelector("#replay-text").textContent, document.querySelector("#clock").textContent]`)
		if paused[0] != "paused" || paused[1] == final {
			t.Fatalf("after pause: %q", paused)
		}
		time.Sleep(600 * time.Millisecond) // more than two recorded deltas
		if now := eval[[]string](t, ctx, `[document.querySelector("#replay").dataset.state, document.querySelector("#replay-text").textContent, document.querySelector("#clock").textContent]`); strings.Join(now, "|") != strings.Join(paused, "|") {
			t.Errorf("the replay moved while paused: %q then %q", paused, now)
		}
		step(t, ctx, "resume at 10x",
			chromedp.SetValue(chromedp.CSS("#speed"), "10"),
			chromedp.Click(chromedp.CSS("#play")),
			chromedp.WaitVisible(chromedp.CSS(`#replay[data-state="done"]`)),
		)
		if got := eval[string](t, ctx, `document.querySelector("#replay-text").textContent`); got != final {
			t.Errorf("after resuming: %q", got)
		}
	})

	t.Run("approve a held request", func(t *testing.T) {
		step(t, ctx, "open the inbox",
			chromedp.Navigate(base+"/approvals"),
			chromedp.WaitVisible(chromedp.CSS("#no-approvals")),
			chromedp.Poll[chromedp.Void](`document.querySelector("#live").textContent === "live"`),
		)
		// The proxy holds a request while the page is open: it appears
		// through the event stream.
		held := s.hold(t, approval.Request{ID: "held-in-browser", Requester: "runner ci-1", RequesterName: "ci-1",
			Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Rule: "needs-approval",
			Prompt: `deploy? <script>alert(4)</script> [MASKED:openai-key]`})
		step(t, ctx, "see it arrive", chromedp.WaitVisible(chromedp.CSS("#approval-held-in-browser")))
		shot(t, ctx, "approvals")
		if got := eval[string](t, ctx, `document.querySelector("#approval-held-in-browser pre").textContent`); !strings.Contains(got, "<script>alert(4)</script>") {
			t.Errorf("prompt preview %q", got)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll("#approvals script").length`); n != 0 {
			t.Errorf("%d script elements in the inbox", n)
		}
		step(t, ctx, "approve it",
			chromedp.SendKeys(chromedp.CSS(`#approval-held-in-browser form[action$="/approve"] input[name="reason"]`), "release window"),
			chromedp.Click(chromedp.CSS(`#approval-held-in-browser button.approve`)),
			chromedp.WaitNotPresent(chromedp.CSS("#approval-held-in-browser")),
		)
		select {
		case d := <-held:
			if d.Decision != approval.Approved || d.By != "alice" || d.Reason != "release window" {
				t.Errorf("the held request got %+v", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the held request was not released")
		}
		step(t, ctx, "see the decision listed", chromedp.WaitVisible(chromedp.CSS(`#decided li[data-id="held-in-browser"]`)))

		// A denial needs a reason: the browser will not submit without
		// one, and the request stays held.
		held = s.hold(t, approval.Request{ID: "to-deny", Requester: "runner ci-2", RequesterName: "ci-2"})
		step(t, ctx, "try to deny without a reason",
			chromedp.WaitVisible(chromedp.CSS("#approval-to-deny")),
			chromedp.Click(chromedp.CSS(`#approval-to-deny button.deny`)),
		)
		if _, ok := s.queue.Get("to-deny"); !ok {
			t.Fatal("denied without a reason")
		}
		step(t, ctx, "deny with a reason",
			chromedp.SendKeys(chromedp.CSS(`#approval-to-deny form[action$="/deny"] input[name="reason"]`), "not in a freeze"),
			chromedp.Click(chromedp.CSS(`#approval-to-deny button.deny`)),
			chromedp.WaitNotPresent(chromedp.CSS("#approval-to-deny")),
		)
		if d := <-held; d.Decision != approval.Denied || d.Reason != "not in a freeze" {
			t.Errorf("the held request got %+v", d)
		}
	})

	if p := events.problems(); len(p) > 0 {
		t.Errorf("the pages misbehaved:\n%s", strings.Join(p, "\n"))
	}
}
