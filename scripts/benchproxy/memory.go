package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// memoryCase sends or fetches one large body through a proxy.
type memoryCase struct {
	Name string
	// Request is the size of a request body (0: a small one).
	Request int64
	// Answer is the kind (json, sse, octet) and size of the answer.
	AnswerKind string
	Answer     int64
}

func memoryCases(n int64) []memoryCase {
	return []memoryCase{
		{Name: "request-json", Request: n},
		{Name: "answer-json", AnswerKind: "json", Answer: n},
		{Name: "answer-sse", AnswerKind: "sse", Answer: n},
		{Name: "answer-octet", AnswerKind: "octet", Answer: n},
		// Twice the size: a relay with bounded memory peaks at the same
		// RSS as for n.
		{Name: "answer-sse-2x", AnswerKind: "sse", Answer: 2 * n},
		{Name: "answer-octet-2x", AnswerKind: "octet", Answer: 2 * n},
	}
}

// memoryResult is what happened to one large body, and the proxy's peak
// RSS while it passed.
type memoryResult struct {
	Path string `json:"path"`
	Case string `json:"case"`
	// Bytes is the size of the large body.
	Bytes int64 `json:"bytes"`
	// Status is the HTTP status the client got (0: none).
	Status int `json:"status"`
	// Received is how many answer bytes reached the client.
	Received int64 `json:"received_bytes"`
	// Result says in words what happened.
	Result string `json:"result"`
	// BaselineRSSMiB is the RSS of the fresh proxy process after one
	// ordinary exchange; PeakRSSMiB its VmHWM during the case.
	Seconds         float64 `json:"seconds"`
	BaselineRSSMiB  float64 `json:"baseline_rss_mib"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	PeakAnonMiB     float64 `json:"peak_rss_anon_mib"`
	PeakFileMiB     float64 `json:"peak_rss_file_mib"`
	PeakIsLifetime  bool    `json:"peak_is_lifetime,omitempty"`
	ProxyCPUSeconds float64 `json:"proxy_cpu_s"`
}

// bigJSONBody is a chat completion request of exactly n bytes, produced
// as it is sent.
func bigJSONBody(n int64) io.Reader {
	const head = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`
	const tail = `"}]}`
	fill := strings.Repeat("lorem ipsum dolor sit amet ", 2500)
	body := n - int64(len(head)+len(tail))
	var rs []io.Reader
	rs = append(rs, strings.NewReader(head))
	rs = append(rs, io.LimitReader(repeatReader(fill), body))
	rs = append(rs, strings.NewReader(tail))
	return io.MultiReader(rs...)
}

// repeatReader yields s over and over.
func repeatReader(s string) io.Reader { return &repeater{s: s} }

type repeater struct {
	s   string
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.s[r.off:])
		n += k
		r.off = (r.off + k) % len(r.s)
	}
	return n, nil
}

func measureMemory(ctx context.Context, p *path, c memoryCase) memoryResult {
	r := memoryResult{Path: p.Name, Case: c.Name, Bytes: max(c.Request, c.Answer)}
	// One ordinary exchange first: the connection is open and the leaf
	// minted before the baseline is read.
	p.do(ctx, chatBody(false), false, nil)
	mi, _ := memStatus(p.PID)
	r.BaselineRSSMiB = mib(mi.RSS)
	m := startMeter(p.PID)
	smp := startSampler(p.PID, 10*time.Millisecond)
	start := time.Now()
	status, received, err := p.big(ctx, c)
	u := m.stop()
	anon, file := smp.finish()
	r.PeakAnonMiB, r.PeakFileMiB = mib(anon), mib(file)
	r.Seconds = time.Since(start).Seconds()
	r.Status, r.Received = status, received
	r.PeakRSSMiB = mib(u.PeakBytes)
	r.PeakIsLifetime = !u.PeakReset
	r.ProxyCPUSeconds = u.CPU.Seconds()
	r.Result = describeBig(c, status, received, err)
	return r
}

// big performs one memory case and returns the status, how many answer
// bytes arrived, and the error that ended it, if any.
func (p *path) big(ctx context.Context, c memoryCase) (int, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var req *http.Request
	var err error
	if c.Request > 0 {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, p.Base+"/v1/chat/completions", bigJSONBody(c.Request))
		if req != nil {
			req.ContentLength = c.Request
		}
	} else {
		url := fmt.Sprintf("%s/v1/bench/answer?kind=%s&bytes=%d", p.Base, c.AnswerKind, c.Answer)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(chatBody(false))))
	}
	if err != nil {
		return 0, 0, err
	}
	if p.Host != "" {
		req.Host = p.Host
	}
	req.Header.Set("Authorization", "Bearer "+p.Credential)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.Client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 400))
		return resp.StatusCode, int64(len(b)), errorBody(b)
	}
	n, err := readAllCount(resp.Body)
	return resp.StatusCode, n, err
}

// errorBody returns an OpenAI-shaped error body as "type: message", or
// the body itself.
func errorBody(b []byte) error {
	var e struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return fmt.Errorf("%s: %s", e.Error.Type, e.Error.Message)
	}
	return fmt.Errorf("%s", strings.TrimSpace(string(b)))
}

func describeBig(c memoryCase, status int, received int64, err error) string {
	what := fmt.Sprintf("%d-byte request body", c.Request)
	if c.Answer > 0 {
		what = fmt.Sprintf("%d-byte %s answer", c.Answer, c.AnswerKind)
	}
	switch {
	case status == http.StatusOK && err == nil && (c.Answer == 0 || received >= c.Answer):
		return what + ": passed (200, " + fmt.Sprint(received) + " bytes received)"
	case status == http.StatusOK && err != nil:
		return fmt.Sprintf("%s: 200 but the answer broke off after %d bytes: %v", what, received, err)
	case status == http.StatusOK:
		return fmt.Sprintf("%s: 200 but only %d bytes received", what, received)
	case status != 0:
		return fmt.Sprintf("%s: refused with %d: %s", what, status, oneLine(err))
	default:
		return fmt.Sprintf("%s: no answer: %s", what, oneLine(err))
	}
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	return s
}
