package proxy

import (
	"bytes"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sessctl/sessctl/store"
)

// forward swaps the credential, sends the request upstream and relays the
// answer.
func (ex *exchange) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	key, why, ok := ex.key()
	if !ok {
		ex.refuse(w, refNoUpstreamKey.with(why))
		return
	}
	body = ex.askUsage(r.URL.Path, body)
	up, err := http.NewRequestWithContext(r.Context(), r.Method, "https://"+ex.t.target()+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		ex.refuse(w, refCannotForward)
		return
	}
	up.Header = outboundHeader(r.Header)
	ex.prov.SetKey(up.Header, key)
	up.ContentLength = int64(len(body))
	if len(body) > 0 {
		up.Header.Set("Content-Length", strconv.Itoa(len(body)))
	} else {
		up.Header.Del("Content-Length")
	}
	up.Host = ex.t.host
	ex.tm.upOut = time.Now()
	resp, err := ex.s.opt.Upstream.RoundTrip(up)
	ex.upstreamAnswered(err)
	if err != nil {
		if r.Context().Err() != nil {
			ex.finish(r.Context(), 0, store.OutcomeClientGone, "client went away before the answer")
			return
		}
		ex.s.log.Warn("upstream request failed", "session", ex.rec.SessionID, "host", ex.t.host, "err", err)
		ex.fail(w, refUpstreamUnreachable.with(ex.t.host))
		return
	}
	defer resp.Body.Close()
	ex.relay(w, r, resp)
}

// outboundHeader copies the runner's headers for the upstream request,
// without hop-by-hop headers (and those named in Connection), the
// runner's credential, sessctl's own metadata headers, or Accept-Encoding
// (the transport asks for gzip and decodes it, so that rules see plain
// text). It copies in one pass: what is not forwarded is never copied.
func outboundHeader(in http.Header) http.Header {
	var named []string // canonical names listed in Connection
	for _, f := range in["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				named = append(named, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	n := 0
	for _, vs := range in {
		n += len(vs)
	}
	vals := make([]string, 0, n) // one array for every value, as Header.Clone
	h := make(http.Header, len(in))
	for k, vs := range in {
		if notForwarded[k] || strings.HasPrefix(k, "Sessctl-") || slices.Contains(named, k) {
			continue
		}
		vals = append(vals, vs...)
		h[k] = vals[len(vals)-len(vs) : len(vals) : len(vals)]
	}
	return h
}

// notForwarded are the request headers never sent upstream (canonical
// names): hop-by-hop headers; every header some provider's clients put a
// credential in (the runner's token never goes upstream, whichever header
// carried it); Accept-Encoding and Content-Length (set for the body
// sessctl sends); Expect (the body is already read whole); and the
// organisation and project the real key is billed to, which are sessctl's
// to choose, not the runner's.
var notForwarded = func() map[string]bool {
	m := map[string]bool{
		"Authorization": true, "X-Api-Key": true, "Api-Key": true,
		"Accept-Encoding": true, "Content-Length": true, "Expect": true,
		"Openai-Organization": true, "Openai-Project": true,
	}
	for _, k := range hopHeaders {
		m[k] = true
	}
	return m
}()
