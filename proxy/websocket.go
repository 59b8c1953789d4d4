package proxy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

// isWebSocket reports whether r asks to upgrade to a WebSocket.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// newWSClient returns the client for upstream WebSocket handshakes: the
// same dialer and verified TLS as the HTTP transport, but HTTP/1.1 only,
// which the Upgrade handshake needs.
func newWSClient(dial func(ctx context.Context, network, addr string) (net.Conn, error), base *tls.Config) *http.Client {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		tc = base.Clone()
	}
	tc.NextProtos = []string{"http/1.1"}
	return &http.Client{
		// A redirect would resend the real key, maybe without TLS.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         dial,
			TLSClientConfig:     tc,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
			TLSHandshakeTimeout: 10 * time.Second,
		}}
}

// wsHandshakeHeaders are the client's handshake headers that the upstream
// handshake makes anew.
var wsHandshakeHeaders = []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions", "Sec-Websocket-Protocol", "Origin"}

// serveWebSocket carries a Responses API WebSocket. The runner is already
// authenticated and its policy applied. sessctl terminates the WebSocket
// on both sides, so it sees whole messages: each response.create is an
// exchange, its prompt through the request rules, the events that answer
// it through the stream masker, recorded as one record.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, ex *exchange) {
	ex.rec.Conn.Transport = "websocket"
	if s.ctx.Err() != nil {
		ex.refuse(w, refShuttingDown)
		return
	}
	if path := ex.prov.WebSocketPath(); path == "" || r.URL.Path != path {
		ex.refuse(w, refWebSocketPath.with(cmp.Or(path, "no path of "+ex.t.host)))
		return
	}
	key, why, ok := ex.key()
	if !ok {
		ex.refuse(w, refNoUpstreamKey.with(why))
		return
	}
	hdr := outboundHeader(r.Header)
	for _, h := range wsHandshakeHeaders {
		hdr.Del(h)
	}
	ex.prov.SetKey(hdr, key)
	var subprotocols []string
	for _, v := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				subprotocols = append(subprotocols, p)
			}
		}
	}
	dialCtx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	up, resp, err := websocket.Dial(dialCtx, "wss://"+ex.t.target()+r.URL.RequestURI(), &websocket.DialOptions{
		HTTPClient: s.wsClient, HTTPHeader: hdr, Host: ex.t.host, Subprotocols: subprotocols,
		CompressionMode: websocket.CompressionContextTakeover,
	})
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			// The upstream refused the handshake (bad key, rate limit...):
			// pass its answer on.
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			for k, vs := range resp.Header {
				if k == "Content-Type" || strings.HasPrefix(strings.ToLower(k), "x-") || k == "Retry-After" {
					w.Header()[k] = vs
				}
			}
			w.WriteHeader(resp.StatusCode)
			w.Write(body)
			ex.rec.ResponseBody = body
			ex.finish(r.Context(), resp.StatusCode, store.OutcomeForwarded, "upstream refused the WebSocket handshake")
			return
		}
		s.log.Warn("upstream WebSocket handshake failed", "session", ex.rec.SessionID, "err", err)
		ex.fail(w, refUpstreamWSUnreachable.with(ex.t.host))
		return
	}
	client, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{up.Subprotocol()},
		// An API client, not a browser: the bearer credential, not the
		// Origin, authenticates it.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionContextTakeover,
	})
	if err != nil {
		up.CloseNow()
		ex.finish(r.Context(), 0, store.OutcomeClientGone, "WebSocket handshake with the runner failed")
		return
	}
	client.SetReadLimit(s.opt.WSMaxMessage)
	up.SetReadLimit(s.opt.WSMaxMessage)
	c := &wsConn{s: s, base: ex, client: client, up: up}
	c.run()
}

// wsConn relays one WebSocket connection.
type wsConn struct {
	s      *Server
	base   *exchange // the handshake: identity, policy, rules, connection
	client *websocket.Conn
	up     *websocket.Conn

	mu      sync.Mutex
	pending []*wsExchange // response.create sent, answer not complete
	writeMu sync.Mutex    // one writer to the client at a time

	active    atomic.Int64           // unix nanoseconds of the last message either way
	clientEnd atomic.Pointer[string] // why the runner's side ended, if it did
}

// wsExchange is one response.create and the events that answer it.
type wsExchange struct {
	ex     *exchange
	masker *rules.EventMasker
	cw     *clientWriter
	// blocked: a rule ended the answer; the rest is dropped.
	blocked bool
	// done: the record is written (guarded by wsConn.mu).
	done bool
}

func (c *wsConn) run() {
	// The connection ends with the server (which waits for it).
	ctx, cancel := context.WithCancel(c.s.ctx)
	defer cancel()
	c.touch()
	go c.watchIdle(ctx)
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		c.fromUpstream(ctx)
		cancel()
	}()
	c.fromClient(ctx)
	cancel()
	<-upDone
	// Only now, with both readers stopped, are unfinished exchanges
	// recorded: no one else touches their maskers.
	outcome, reason := store.OutcomeUpstreamError, "upstream WebSocket ended"
	if r := c.clientEnd.Load(); r != nil {
		outcome, reason = store.OutcomeClientGone, *r
	}
	c.abandon(outcome, reason)
	c.client.CloseNow()
	c.up.CloseNow()
}

// touch notes traffic in either direction.
func (c *wsConn) touch() { c.active.Store(time.Now().UnixNano()) }

// watchIdle closes a connection with no traffic either way and no answer
// pending for IdleTimeout: a long answer keeps it open however quiet the
// runner is.
func (c *wsConn) watchIdle(ctx context.Context) {
	idle := c.s.opt.IdleTimeout
	tick := time.NewTicker(min(idle/4, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		busy := len(c.pending) > 0
		c.mu.Unlock()
		if !busy && time.Since(time.Unix(0, c.active.Load())) > idle {
			c.clientGone("idle")
			c.client.Close(websocket.StatusGoingAway, "idle")
			c.up.Close(websocket.StatusGoingAway, "idle")
			return
		}
	}
}

// clientGone notes why the runner's side ended (the first reason wins).
func (c *wsConn) clientGone(reason string) {
	c.clientEnd.CompareAndSwap(nil, &reason)
}

// newExchange starts the record of one client message.
func (c *wsConn) newExchange(msg []byte) *exchange {
	b := c.base
	rec := *b.rec
	rec.SessionID = uuid.Must(uuid.NewV7()).String()
	rec.Start = time.Now().UTC()
	rec.Kind = store.KindExchange
	rec.Method = "WS"
	rec.Rules, rec.Deltas, rec.SecretHMACs = nil, nil, nil
	rec.Extra = map[string]string{"ws_session": b.rec.SessionID}
	rec.Model = wsModel(msg)
	return &exchange{s: b.s, t: b.t, rec: &rec, who: b.who, policy: b.policy, rules: b.rules,
		tm: timing{parent: b.tm.parent}}
}

// fromClient reads the runner's messages, applies the request rules and
// forwards them.
func (c *wsConn) fromClient(ctx context.Context) {
	for {
		typ, msg, err := c.client.Read(ctx)
		if err != nil {
			code := websocket.CloseStatus(err)
			if code == -1 {
				code = websocket.StatusGoingAway
			}
			c.clientGone("client went away")
			c.up.Close(code, "client closed")
			return
		}
		c.touch()
		if typ != websocket.MessageText {
			// Binary messages are not part of the API, and could carry
			// what the rules cannot read: refuse them.
			c.clientGone("client sent a binary message")
			c.client.Close(websocket.StatusUnsupportedData, "sessctl carries JSON text messages only")
			c.up.Close(websocket.StatusGoingAway, "client closed")
			return
		}
		if !c.handleClientMessage(ctx, msg) {
			return
		}
	}
}

func (c *wsConn) handleClientMessage(ctx context.Context, msg []byte) bool {
	ex := c.newExchange(msg)
	evType, err := wsEventType(msg)
	ex.rec.Extra["ws_event"] = evType
	if err != nil {
		// What sessctl cannot classify for certain is not forwarded.
		ex.rec.RequestBody = ex.rules.Request(msg).Body
		c.sendError(ctx, ex, refInvalidEvent.with(err))
		return true
	}
	if err := c.s.opt.Store.Healthy(); err != nil {
		c.sendError(ctx, ex, refStoreUnavailable)
		return true
	}
	res := ex.rules.Request(msg)
	ex.addHits(res)
	ex.rec.RequestBody = res.Body
	if res.Block != nil {
		c.sendError(ctx, ex, forRule(res.Block))
		return true
	}
	if why, ok := ex.needsApproval(res); ok && evType != "response.cancel" {
		v := ex.awaitApproval(ctx, why, res.Body)
		if v.clientGone {
			ex.finish(ctx, 0, store.OutcomeClientGone, v.msg)
			return false
		}
		if !v.ok {
			c.sendError(ctx, ex, v.refusal)
			return true
		}
	}
	if evType != "response.create" {
		// Other client events (response.cancel, ...) are forwarded and
		// recorded on their own.
		if err := c.up.Write(ctx, websocket.MessageText, res.Body); err != nil {
			ex.finish(ctx, 0, store.OutcomeUpstreamError, "upstream WebSocket write failed")
			return false
		}
		ex.finish(ctx, 0, store.OutcomeForwarded, "")
		return true
	}
	if isWarmup(msg) {
		ex.rec.Extra["warmup"] = "true"
	}
	if err := begin(ctx, c.s.opt.Store, ex.rec); err != nil {
		c.sendError(ctx, ex, refStoreUnavailable)
		return true
	}
	c.push(ex)
	if err := c.up.Write(ctx, websocket.MessageText, res.Body); err != nil {
		// The upstream reader sees the broken connection and stops; run
		// then records what is pending.
		c.up.CloseNow()
		return false
	}
	return true
}

// newWSExchange prepares the answer side of ex.
func (c *wsConn) newWSExchange(ex *exchange) *wsExchange {
	return &wsExchange{ex: ex, masker: ex.rules.NewEventMasker(rules.StreamOptions{Holdback: c.s.opt.Holdback}),
		cw: &clientWriter{start: ex.rec.Start, limit: c.s.opt.RecordBodyLimit}}
}

// push starts waiting for the answer to ex.
func (c *wsConn) push(ex *exchange) *wsExchange {
	wx := c.newWSExchange(ex)
	c.mu.Lock()
	c.pending = append(c.pending, wx)
	c.mu.Unlock()
	return wx
}

// sendError answers one client message with an error event in the API's
// shape; the connection stays usable.
func (c *wsConn) sendError(ctx context.Context, ex *exchange, r refusal) {
	ev, _ := json.Marshal(map[string]any{
		"type":   "error",
		"status": r.status,
		"error":  map[string]any{"type": r.typ, "code": r.code, "message": r.msg, "param": nil},
	})
	ex.rec.Kind = store.KindRefused
	ex.rec.ResponseBody = ev
	ex.finish(ctx, r.status, r.outcome, r.msg)
	c.writeClient(ctx, ev)
}

func (c *wsConn) writeClient(ctx context.Context, msg []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.client.Write(ctx, websocket.MessageText, msg)
}

// fromUpstream relays the upstream's events to the runner through the
// current exchange's masker; a terminal event completes its record, which
// is durable before that event reaches the runner.
func (c *wsConn) fromUpstream(ctx context.Context) {
	for {
		typ, msg, err := c.up.Read(ctx)
		if err != nil {
			code := websocket.CloseStatus(err)
			if code == -1 {
				c.client.Close(websocket.StatusInternalError, "upstream connection lost")
				return
			}
			c.client.Close(code, "upstream closed")
			return
		}
		c.touch()
		if typ != websocket.MessageText {
			c.writeMu.Lock()
			c.client.Write(ctx, typ, msg)
			c.writeMu.Unlock()
			continue
		}
		c.mu.Lock()
		var wx *wsExchange
		if len(c.pending) > 0 {
			wx = c.pending[0]
		}
		c.mu.Unlock()
		unsolicited := wx == nil
		if unsolicited {
			// An event no response.create asked for: masked and recorded
			// at once, as an exchange of its own.
			ex := c.newExchange(nil)
			ex.rec.Extra["ws_event"] = "unsolicited"
			wx = c.newWSExchange(ex)
		}
		terminal := unsolicited || rules.IsTerminalEvent(wsType(msg))
		out, err := wx.masker.Event(msg)
		switch {
		case wx.blocked:
			// The answer was cut off by a rule: drop the rest of it.
			out = nil
		case errors.Is(err, rules.ErrBlocked):
			// out ends with the error event the runner sees; what is
			// still on its way, up to the terminal event, is dropped.
			wx.blocked = true
		case err != nil:
			out = [][]byte{c.base.rules.Response(msg).Body}
		}
		if terminal {
			if !wx.blocked {
				out = append(wx.masker.Flush(), out...)
			}
			outcome, reason := store.OutcomeForwarded, ""
			if b := wx.masker.Blocked(); b != nil {
				outcome, reason = store.OutcomeBlocked, "answer blocked by rule "+b.Name
			}
			// Record first: the answer is complete for the runner only
			// once its record is durable.
			for _, ev := range out {
				wx.cw.note(ev)
			}
			if !c.complete(ctx, wx, http.StatusOK, outcome, reason) {
				c.client.Close(websocket.StatusInternalError, "sessctl could not record this answer")
				c.up.Close(websocket.StatusGoingAway, "")
				return
			}
			for _, ev := range out {
				if err := c.writeClient(ctx, ev); err != nil {
					return
				}
			}
			continue
		}
		for _, ev := range out {
			wx.cw.note(ev)
			if err := c.writeClient(ctx, ev); err != nil {
				return
			}
		}
	}
}

// complete finishes an exchange's record, once; it reports whether the
// record is durable.
func (c *wsConn) complete(ctx context.Context, wx *wsExchange, status int, outcome store.Outcome, reason string) bool {
	c.mu.Lock()
	if i := slices.Index(c.pending, wx); i >= 0 {
		c.pending = slices.Delete(c.pending, i, i+1)
	}
	done := wx.done
	wx.done = true
	c.mu.Unlock()
	if done {
		return true
	}
	wx.ex.addHits(wx.masker.Result())
	wx.ex.rec.ResponseBody = wx.cw.rec.Bytes()
	wx.ex.rec.Deltas = wx.cw.deltas
	return wx.ex.finish(ctx, status, outcome, reason)
}

// abandon records every exchange still waiting for its answer.
func (c *wsConn) abandon(outcome store.Outcome, reason string) {
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, wx := range pending {
		c.complete(context.Background(), wx, 0, outcome, reason)
	}
}

// wsEventType returns a client event's "type", refusing what could be
// read two ways: invalid JSON, a non-object, a missing or non-string type,
// or several keys that a case-insensitive decoder would take for "type".
func wsEventType(msg []byte) (string, error) {
	if !json.Valid(msg) {
		return "", errors.New("not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(msg))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", errors.New("not a JSON object")
	}
	typ, found := "", false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", errors.New("not valid JSON")
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return "", errors.New("not valid JSON")
		}
		if !strings.EqualFold(key, "type") {
			continue
		}
		if found || key != "type" || json.Unmarshal(v, &typ) != nil {
			return "", errors.New(`ambiguous or malformed "type"`)
		}
		found = true
	}
	if !found || typ == "" || len(typ) > 100 {
		return "", errors.New(`no "type"`)
	}
	return typ, nil
}

// wsType returns a message's "type" field.
func wsType(msg []byte) string {
	var v struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(msg, &v) != nil || len(v.Type) > 100 {
		return ""
	}
	return v.Type
}

// wsModel returns the model a response.create names.
func wsModel(msg []byte) string {
	var v struct {
		Model    string `json:"model"`
		Response struct {
			Model string `json:"model"`
		} `json:"response"`
	}
	if json.Unmarshal(msg, &v) != nil {
		return ""
	}
	if v.Model == "" {
		v.Model = v.Response.Model
	}
	if len(v.Model) > 200 {
		return ""
	}
	return v.Model
}

// isWarmup reports a response.create with "generate": false.
func isWarmup(msg []byte) bool {
	var v struct {
		Generate *bool `json:"generate"`
		Response struct {
			Generate *bool `json:"generate"`
		} `json:"response"`
	}
	if json.Unmarshal(msg, &v) != nil {
		return false
	}
	g := v.Generate
	if g == nil {
		g = v.Response.Generate
	}
	return g != nil && !*g
}
