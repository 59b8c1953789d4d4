package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/google/uuid"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/store"
)

// decision is what the egress policy says of a host.
type decision int

const (
	refuse decision = iota
	intercept
	passthrough
)

// decide applies the egress policy to a host name.
func (s *Server) decide(host string) decision {
	h := hostOnly(host)
	switch {
	case s.intercepts(h):
		return intercept
	case s.pass[h]:
		return passthrough
	}
	return refuse
}

// intercepts reports whether host is intercepted: listed, or a one-label
// name below a listed wildcard ("*.openai.azure.com").
func (s *Server) intercepts(host string) bool {
	_, ok := s.interceptEntry(host)
	return ok
}

// interceptEntry returns the intercept entry that covers host: host
// itself, or the wildcard "*.<parent>" for a one-label name below parent.
func (s *Server) interceptEntry(host string) (string, bool) {
	if s.intercept[host] {
		return host, true
	}
	if label, parent, ok := strings.Cut(host, "."); ok && label != "" && label != "*" && strings.Contains(parent, ".") {
		if w := "*." + parent; s.intercept[w] {
			return w, true
		}
	}
	return "", false
}

// providerOf is the provider of an intercepted host.
func (s *Server) providerOf(host string) provider.Name {
	e, _ := s.interceptEntry(host)
	return s.providers[e]
}

// newFront builds the explicit listener's handler on goproxy: CONNECT is
// decided here and every accepted tunnel is hijacked, so that sessctl (not
// goproxy) terminates TLS, forwards, streams and records. Plain HTTP
// requests are refused: runners reach the API over TLS only.
func (s *Server) newFront() http.Handler {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = discardLogger{}
	// Never inherit HTTPS_PROXY: goproxy's default transport reads it, and
	// a proxy that inherits its own address loops.
	gp.Tr = &http.Transport{Proxy: nil}
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, refNotProxyRequest)
	})
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: s.hijack}, host
	})
	gp.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		return r, s.refusePlain(r)
	})
	return gp
}

// refusePlain answers a plain-HTTP proxy request: sessctl forwards none.
func (s *Server) refusePlain(r *http.Request) *http.Response {
	host := hostOnly(r.URL.Host)
	ref := refPlainHTTP.with(host)
	if s.decide(host) == intercept {
		ref = refPlainHTTPS.with(host)
	}
	s.recordRefusal(r.Context(), &store.Record{
		Conn: store.Conn{Mode: "explicit", Client: r.RemoteAddr}, Host: host,
		Method: r.Method, Path: r.URL.Path, Status: ref.status, Reason: ref.msg,
	})
	resp := goproxy.NewResponse(r, "application/json", ref.status, string(ref.body()))
	resp.Header.Set("X-Should-Retry", "false")
	return resp
}

// hijack takes over a CONNECT connection once goproxy has parsed it.
func (s *Server) hijack(req *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
	s.wg.Add(1)
	defer s.wg.Done()
	target := req.URL.Host
	host := hostOnly(target)
	t := &tunnel{id: uuid.Must(uuid.NewV7()).String(), mode: "explicit", host: truncate(host, 255), client: client.RemoteAddr().String()}
	_, port, err := net.SplitHostPort(target)
	t.port = port
	if err != nil || port == "" || host == "" {
		s.refuseConnect(client, t, req, refBadConnect.with(target))
		return
	}
	if !s.ports[port] {
		s.refuseConnect(client, t, req, refEgressPort.with(port))
		return
	}
	switch s.decide(host) {
	case refuse:
		s.refuseConnect(client, t, req, refEgressHost.with(host))
	case passthrough:
		fmt.Fprint(client, "HTTP/1.1 200 Connection established\r\n\r\n")
		s.splice(s.ctx, client, t, target)
	case intercept:
		t.proxyCred = identity.ParseCredential(req.Header.Get("Proxy-Authorization"))
		fmt.Fprint(client, "HTTP/1.1 200 Connection established\r\n\r\n")
		s.terminate(client, t)
	}
}

// refuseConnect answers a CONNECT with an error and records the refusal.
func (s *Server) refuseConnect(client net.Conn, t *tunnel, req *http.Request, ref refusal) {
	defer client.Close()
	status, msg, body := ref.status, ref.msg, ref.body()
	client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(client, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Should-Retry: false\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
	s.recordRefusal(context.Background(), &store.Record{
		Conn: t.conn(), Host: t.host, Method: req.Method,
		Status: status, Reason: msg, Extra: map[string]string{"target": truncate(req.URL.Host, 255)},
	})
}

// truncate cuts s to at most n bytes: refusals record what a client
// asked for, bounded.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
