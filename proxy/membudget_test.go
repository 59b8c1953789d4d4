package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessctl/sessctl/internal/testutil"
)

// bigPrompt is a JSON prompt of about n bytes.
func bigPrompt(n int) string {
	return `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", n) + `"}]}`
}

// TestBufferedBytesBudget: prompts held across exchanges never exceed
// max_buffered_bytes; the request that would is refused at once with an
// OpenAI-shaped 503, whether its length is announced or not, and the
// budget is whole again once the exchanges end.
func TestBufferedBytesBudget(t *testing.T) {
	release := make(chan struct{})
	var arrived sync.WaitGroup
	held := func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release
		okJSON(w, r)
	}
	const budgetBytes = 1 << 20
	e := newEnv(t, held, func(o *Options) { o.MaxBufferedBytes = budgetBytes; o.MaxBody = 4 << 20 })
	// Two 400 KB prompts are held upstream: 800 KB of the budget.
	arrived.Add(2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := post(t, e.newClient(), "https://api.openai.com/v1/chat/completions", testRunnerToken, bigPrompt(400<<10))
			if resp.StatusCode != 200 {
				t.Errorf("held prompt: %d %s", resp.StatusCode, body)
			}
		}()
	}
	arrived.Wait()
	if b := e.proxy.BufferedBytes(); b < 800<<10 || b > budgetBytes {
		t.Fatalf("buffered %d bytes with two 400 KB prompts held", b)
	}
	// A third, announced or chunked, does not fit.
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = strings.NewReader(bigPrompt(400 << 10))
		if chunked {
			rd = io.MultiReader(rd) // no length: sent chunked
		}
		req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", rd)
		req.Header.Set("Authorization", "Bearer "+testRunnerToken)
		start := time.Now()
		resp, body := do(t, e.newClient(), req)
		if resp.StatusCode != http.StatusServiceUnavailable || apiErr(t, body).Code != "over_memory_budget" {
			t.Fatalf("chunked=%v: %d %s", chunked, resp.StatusCode, body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("refusal took %v", d)
		}
		if b := e.proxy.BufferedBytes(); b > budgetBytes {
			t.Fatalf("buffered %d bytes, over the %d budget", b, budgetBytes)
		}
	}
	close(release)
	wg.Wait()
	testutil.WaitFor(t, 5*time.Second, "the budget to be whole again", func() bool { return e.proxy.BufferedBytes() == 0 })
	// And the next prompt passes.
	arrived.Add(1)
	if resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, bigPrompt(400<<10)); resp.StatusCode != 200 {
		t.Fatalf("after release: %d %s", resp.StatusCode, body)
	}
}

// TestConnectionLimits: the explicit listener holds at most
// max_conns_per_source connections from one address (429 beyond) and
// max_conns in all (503 beyond), answering the extra ones at once without
// reading them, and takes new ones again as old ones close.
func TestConnectionLimits(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) { o.MaxConns = 12; o.MaxConnsPerSource = 8 })
	dialFrom := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", e.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// answer reads what the proxy says unprompted within a short while.
	answer := func(c net.Conn) string {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b, _ := bufio.NewReader(c).ReadString('\n')
		return b
	}
	var held []net.Conn
	for range 8 {
		held = append(held, dialFrom("127.0.0.1"))
	}
	testutil.WaitFor(t, 5*time.Second, "8 connections counted", func() bool { return e.proxy.OpenConns() == 8 })
	if got := answer(dialFrom("127.0.0.1")); !strings.HasPrefix(got, "HTTP/1.1 429") {
		t.Fatalf("9th connection from one address: %q", got)
	}
	for range 4 {
		held = append(held, dialFrom("127.0.0.2"))
	}
	testutil.WaitFor(t, 5*time.Second, "12 connections counted", func() bool { return e.proxy.OpenConns() == 12 })
	c := dialFrom("127.0.0.3")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 503")) || !bytes.Contains(b, []byte(`"too_many_connections"`)) || !bytes.Contains(b, []byte(`"sessctl_unavailable"`)) {
		t.Fatalf("13th connection: %q", b)
	}
	// Closing frees the slots; a runner gets through again.
	for _, c := range held {
		c.Close()
	}
	testutil.WaitFor(t, 5*time.Second, "the slots freed", func() bool { return e.proxy.OpenConns() == 0 })
	if resp, body := post(t, e.newClient(), "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody); resp.StatusCode != 200 {
		t.Fatalf("after closing: %d %s", resp.StatusCode, body)
	}
	var m bytes.Buffer
	e.proxy.Metrics().WritePrometheus(&m)
	if !strings.Contains(m.String(), `sessctl_connections_refused_total{bound="total"} 1`) || !strings.Contains(m.String(), `sessctl_connections_refused_total{bound="source"} 1`) {
		t.Errorf("metrics:\n%s", m.String())
	}
}

// TestWebSocketMessageBudget: a WebSocket message that does not fit in
// max_buffered_bytes closes the connection with 1013 (try again later)
// instead of being held; smaller ones pass, and the budget is whole after.
func TestWebSocketMessageBudget(t *testing.T) {
	e := newEnv(t, wsUpstream(t, nil), func(o *Options) { o.MaxBufferedBytes = 64 << 10; o.WSMaxMessage = 1 << 20 })
	c := dialWS(t, e, testRunnerToken)
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"response.create","response":{"model":"gpt-4o","input":"hi"}}`)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, "response.completed")
	big := `{"type":"response.create","response":{"model":"gpt-4o","input":"` + strings.Repeat("a", 200<<10) + `"}}`
	if err := c.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusTryAgainLater {
		t.Fatalf("after a message over the budget: close status %v (err %v)", got, err)
	}
	testutil.WaitFor(t, 5*time.Second, "the budget to be whole again", func() bool { return e.proxy.BufferedBytes() == 0 })
}
