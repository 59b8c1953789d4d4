package main

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// apiHost is the host name the stand-in answers for.
const apiHost = "api.openai.com"

// realKey is the API key the stand-in accepts: a proxy that does not swap
// a runner's credential for it gets 401.
const realKey = "sk-bench-real-key-0000000000000000"

// upstream is a TLS stand-in for api.openai.com.
type upstream struct {
	// Addr is the host:port it listens on.
	Addr string
	// CAFile is the PEM certificate of its throwaway CA.
	CAFile string
	// CAs holds that certificate, for clients that dial it directly.
	CAs *x509.CertPool
	// proc is the stand-in's process when it runs in one of its own
	// (see startStandIn); srv the server when it runs in this one.
	proc *child
	srv  *http.Server
}

// startUpstream creates a throwaway CA in dir, a leaf for api.openai.com
// (and 127.0.0.1 and the listen address's IP), and serves chat
// completions in this process on listen (host:port; "" for a loopback
// port): JSON answers (gzip-compressed when the client accepts gzip), or
// SSE answers of deltas deltas spaced interval apart.
func startUpstream(dir, listen string, deltas int, interval time.Duration) (*upstream, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if h, _, err := net.SplitHostPort(listen); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
			ips = append(ips, ip)
		}
	}
	cert, caPEM, err := throwawayPKI(ips)
	if err != nil {
		return nil, fmt.Errorf("upstream: certificates: %w", err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("upstream: listen: %w", err)
	}
	h := &standIn{deltas: deltas, interval: interval}
	srv := &http.Server{
		Handler:   h,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		// Aborted 50 MB uploads are expected; don't log them.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(l, "", "")
	return &upstream{Addr: l.Addr().String(), CAFile: caFile, CAs: pool, srv: srv}, nil
}

// Close stops the stand-in.
func (u *upstream) Close() error {
	if u.proc != nil {
		u.proc.Stop()
		return nil
	}
	return u.srv.Close()
}

// PID is the stand-in's process when it runs in its own, else 0.
func (u *upstream) PID() int {
	if u.proc == nil {
		return 0
	}
	return u.proc.PID()
}

// throwawayPKI returns a leaf certificate for api.openai.com and ips
// signed by a fresh CA, and the CA's PEM. Both carry the extensions strict
// clients (Python's ssl, OpenSSL -x509_strict) require.
func throwawayPKI(ips []net.IP) (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "benchproxy throwaway upstream CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: apiHost},
		DNSNames:     []string{apiHost},
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// standIn answers like the chat completions API.
//
//	POST /v1/chat/completions                  JSON (gzip when accepted), or SSE when "stream": true
//	POST /v1/bench/answer?kind=K&bytes=N       an N-byte answer: K = json | sse | octet
//
// Every request must carry the real key.
type standIn struct {
	deltas   int
	interval time.Duration
}

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+realKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
		return
	}
	switch r.URL.Path {
	case "/v1/chat/completions":
		s.chat(w, r)
	case "/v1/bench/answer":
		// Drain the (small) request first, like any API would.
		io.Copy(io.Discard, r.Body)
		n, _ := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		bigAnswer(w, r.URL.Query().Get("kind"), n)
	default:
		http.NotFound(w, r)
	}
}

func (s *standIn) chat(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"We could not parse the JSON body of your request.","type":"invalid_request_error","param":null,"code":null}}`)
		return
	}
	// Read what is left (a large body), as an API server would.
	io.Copy(io.Discard, r.Body)
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header) {
			// As the API does: the answer compressed (once, up front:
			// the stand-in's CPU is not what is measured).
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", strconv.Itoa(len(chatAnswerGzip)))
			w.Write(chatAnswerGzip)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(chatAnswer)))
		io.WriteString(w, chatAnswer)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for i := 0; i < s.deltas; i++ {
		if i > 0 {
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := io.WriteString(w, chunk(i)); err != nil {
			return
		}
		rc.Flush()
	}
	io.WriteString(w, "data: [DONE]\n\n")
	rc.Flush()
}

// chatAnswer is a non-streamed chat completion of typical size.
const chatAnswer = `{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"The build failed because the integration test expects the fixture file testdata/config.yaml, which the refactor moved to testdata/configs/default.yaml. Update the path in TestLoadConfig, or restore the old location with a symlink.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":412,"completion_tokens":52,"total_tokens":464,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_06737a9306"}`

// chatAnswerGzip is chatAnswer gzip-compressed.
var chatAnswerGzip = gzipBytes([]byte(chatAnswer))

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// acceptsGzip reports whether Accept-Encoding admits gzip (a q of 0
// refuses it).
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") && strings.TrimSpace(coding) != "*" {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			if q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
				return false
			}
			return true
		}
	}
	return false
}

var words = strings.Fields("The build failed because the integration test expects the fixture file at its old path; update the path or restore the file.")

// deltaText is the text of the i-th delta of a streamed answer.
func deltaText(i int) string { return " " + words[i%len(words)] }

// deltaTexts is the text of each delta of an n-delta streamed answer.
func deltaTexts(n int) []string {
	t := make([]string, n)
	for i := range t {
		t[i] = deltaText(i)
	}
	return t
}

// chunk returns the i-th SSE event of a streamed answer.
func chunk(i int) string {
	delta := `"content":` + strconv.Quote(deltaText(i))
	if i == 0 {
		delta = `"role":"assistant",` + delta
	}
	return `data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{` +
		delta + `},"logprobs":null,"finish_reason":null}]}` + "\n\n"
}

// bigAnswer writes an n-byte answer of the given kind as fast as the
// connection takes it, without holding it in memory.
func bigAnswer(w http.ResponseWriter, kind string, n int64) {
	fill := strings.Repeat("lorem ipsum dolor sit amet ", 2500) // ~66 KB of text
	switch kind {
	case "json":
		const head, tail = `{"id":"chatcmpl-big","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`, `"},"finish_reason":"stop"}]}`
		body := n - int64(len(head)+len(tail))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.WriteString(w, head)
		writeFill(w, fill, body)
		io.WriteString(w, tail)
	case "sse":
		w.Header().Set("Content-Type", "text/event-stream")
		const head, tail, done = `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"`, `"}}]}` + "\n\n", "data: [DONE]\n\n"
		ev := head + fill[:4000] + tail
		left := n - int64(len(done))
		for left >= int64(len(ev)) {
			if _, err := io.WriteString(w, ev); err != nil {
				return
			}
			left -= int64(len(ev))
		}
		// A last, shorter event (or an SSE comment) makes the total n.
		if k := left - int64(len(head)+len(tail)); k >= 0 {
			io.WriteString(w, head+fill[:k]+tail)
		} else if left >= 2 {
			io.WriteString(w, ":"+strings.Repeat(" ", int(left-2))+"\n")
		}
		io.WriteString(w, done)
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		writeFill(w, fill, n)
	}
}

func writeFill(w io.Writer, fill string, n int64) {
	for n > 0 {
		k := min(n, int64(len(fill)))
		if _, err := io.WriteString(w, fill[:k]); err != nil {
			return
		}
		n -= k
	}
}
