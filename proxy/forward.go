package proxy

import (
	"bytes"
	"net/http"
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
// without hop-by-hop headers, the runner's credential, sessctl's own
// metadata headers, or Accept-Encoding (the transport asks for gzip and
// decodes it, so that rules see plain text).
func outboundHeader(in http.Header) http.Header {
	h := in.Clone()
	removeHopHeaders(h)
	// Every header some provider's clients put a credential in: the
	// runner's token never goes upstream, whichever header carried it.
	h.Del("Authorization")
	h.Del("X-Api-Key")
	h.Del("Api-Key")
	h.Del("Accept-Encoding")
	h.Del("Content-Length")
	// The body is already read whole; and the organisation and project
	// the real key is billed to are sessctl's to choose, not the runner's.
	h.Del("Expect")
	h.Del("Openai-Organization")
	h.Del("Openai-Project")
	for k := range h {
		if strings.HasPrefix(k, "Sessctl-") {
			h.Del(k)
		}
	}
	return h
}
