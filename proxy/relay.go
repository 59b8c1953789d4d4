package proxy

import (
	"cmp"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/usage"
)

// maxDeltas bounds the per-delta timing kept in one record.
const maxDeltas = 100_000

// relay sends the upstream answer to the runner: streamed answers event by
// event through the stream masker, flushed as they come; JSON and text
// answers masked whole; anything else streamed through unchanged.
func (ex *exchange) relay(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	body, err := decodeBody(resp)
	if err != nil {
		ex.fail(w, refUpstreamEncoding.with(err))
		return
	}
	defer body.Close()
	removeHopHeaders(resp.Header)
	// The upstream's header is this exchange's own (the transport makes
	// a new one for every answer): its values are handed on, not copied.
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	h.Del("Content-Length")
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case mediaType == "text/event-stream":
		ex.relayStream(w, r, resp.StatusCode, body, true)
	case strings.HasPrefix(mediaType, "audio/"), strings.HasPrefix(mediaType, "image/"), strings.HasPrefix(mediaType, "video/"):
		// Media (speech, images) is relayed as it comes, unmasked.
		ex.relayStream(w, r, resp.StatusCode, body, false)
	case resp.ContentLength > ex.s.opt.MaxBody:
		// Too large to be read whole and masked: refuse at once.
		clear(w.Header())
		ex.fail(w, refAnswerTooLarge.with(ex.s.opt.MaxBody))
	default:
		// Everything else, typed or not, is read whole and masked.
		ex.relayWhole(r.Context(), w, resp.StatusCode, body, resp.ContentLength)
	}
}

// relayWhole masks a JSON or text answer whole. The record is made durable
// before the runner receives the answer. size is the answer's length if
// known (decoded answers' is not), else -1.
func (ex *exchange) relayWhole(ctx context.Context, w http.ResponseWriter, status int, body io.Reader, size int64) {
	data, err := ex.hold.readAll(body, size, ex.s.opt.MaxBody)
	ex.tm.upFirst, ex.tm.whole = time.Now(), true
	if errors.Is(err, errOverBudget) {
		clear(w.Header())
		ex.fail(w, refAnswerBudget.with(ex.s.mem.max))
		return
	}
	if err != nil {
		clear(w.Header())
		ex.fail(w, refUpstreamRead)
		return
	}
	if int64(len(data)) > ex.s.opt.MaxBody {
		clear(w.Header())
		ex.fail(w, refAnswerTooLarge.with(ex.s.opt.MaxBody))
		return
	}
	ex.rec.Usage = ex.answerUsage(data, false)
	res := ex.rules.ResponseIn(data, ex.prov.Dialect())
	ex.addHits(res)
	ex.rec.ResponseBody = res.Body
	if b := cmp.Or(res.Block, res.Approve); b != nil {
		// A block rule fired in the answer (or an approve rule, which an
		// answer cannot wait for; or a mask rule in a signed thinking
		// block, which is not edited): the runner gets an error, as a
		// stream would end with one. The record keeps the masked answer.
		clear(w.Header())
		ref := forAnswerRule(b)
		if res.InThinking {
			ref = refAnswerThinking.with(b.Name)
		}
		ex.fail(w, ref)
		return
	}
	if !ex.finish(ctx, status, store.OutcomeForwarded, "") {
		clear(w.Header())
		writeErrorFor(w, refNotRecorded, ex.prov)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(status)
	w.Write(res.Body)
}

// relayStream relays an answer as it arrives, flushing after each event
// (SSE, masked) or each read (anything else, unmasked). The record is
// appended before the final chunk: the runner's answer is complete only
// once it is durable.
func (ex *exchange) relayStream(w http.ResponseWriter, r *http.Request, status int, body io.Reader, sse bool) {
	if err := ex.awaitBegun(r.Context()); err != nil {
		// The request reached the upstream but sessctl could not note it:
		// the runner gets no answer it could act on unrecorded.
		ex.s.recordErrs.log(ex.s.log, "cannot record exchange", err, "session", ex.rec.SessionID)
		clear(w.Header())
		writeError(w, refNotRecorded)
		ex.finish(r.Context(), refNotRecorded.status, store.OutcomeAborted, "forwarded, but the in-flight note could not be written: the answer was withheld")
		return
	}
	cw := &clientWriter{w: w, rc: http.NewResponseController(w), start: ex.rec.Start, limit: ex.s.opt.RecordBodyLimit, hold: &ex.hold}
	// The last write's deadline must not cut the final chunk, written
	// after the record.
	defer cw.rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(status)
	cw.flush()
	var sink io.Writer = cw
	var masker *rules.SSEMasker
	var tap *usage.Stream
	if sse {
		masker = ex.rules.NewSSE(cw, cw.flush, rules.StreamOptions{Holdback: ex.s.opt.Holdback, Dialect: ex.prov.Dialect()})
		tap = usage.NewStream(masker, ex.stripUsage, int(ex.s.opt.MaxBody))
		sink = tap
	}
	buf := make([]byte, 32<<10)
	outcome, reason := store.OutcomeForwarded, ""
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if ex.tm.upFirst.IsZero() {
				ex.tm.upFirst = time.Now()
			}
			if _, werr := sink.Write(buf[:n]); werr != nil {
				switch {
				case errors.Is(werr, rules.ErrBlocked):
					// The masker ended the stream with an error event;
					// the outcome comes from masker.Blocked below.
				case cw.err != nil:
					outcome, reason = store.OutcomeClientGone, "client went away mid-answer"
				default:
					outcome, reason = store.OutcomeUpstreamError, "upstream answer could not be relayed: "+werr.Error()
				}
				break
			}
			if !sse {
				cw.flush()
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if r.Context().Err() != nil {
				outcome, reason = store.OutcomeClientGone, "client went away mid-answer"
			} else {
				outcome, reason = store.OutcomeUpstreamError, "upstream answer broke off"
			}
			break
		}
	}
	if masker != nil {
		if outcome == store.OutcomeForwarded && masker.Blocked() == nil {
			err := tap.Close()
			if err == nil {
				err = masker.Close()
			}
			if err != nil {
				outcome, reason = store.OutcomeClientGone, "client went away mid-answer"
			}
		}
		ex.addHits(masker.Result())
		if b := masker.Blocked(); b != nil {
			outcome, reason = store.OutcomeBlocked, "answer blocked by rule "+b.Name
			if masker.InThinking() {
				// A thinking block is signed: sessctl ends the answer
				// rather than edit it.
				reason = "answer ended: rule " + b.Name + " matched inside a thinking block, which is not edited"
			}
		}
		u := tap.Usage()
		if ex.prov.Dialect() != rules.DialectOpenAI {
			u = ex.providerUsage(cw.rec, true)
		}
		ex.streamUsage(u, outcome)
	}
	ex.rec.ResponseBody = cw.rec
	ex.rec.Deltas = cw.deltas
	ex.tm.clientFirst = cw.first
	if cw.truncated {
		if ex.rec.Extra == nil {
			ex.rec.Extra = map[string]string{}
		}
		ex.rec.Extra["response_truncated_at"] = strconv.Itoa(len(cw.rec))
		if cw.overBudget {
			ex.rec.Extra["response_truncated_why"] = "max_buffered_bytes"
		}
	}
	ok := ex.finish(r.Context(), status, outcome, reason)
	if !ok || outcome == store.OutcomeUpstreamError {
		// End the chunked answer without its terminator, so the runner
		// cannot mistake it for a complete, recorded one.
		panic(http.ErrAbortHandler)
	}
}

// clientWriter writes to the runner, keeping a bounded copy of what was
// sent and the timing of each write.
type clientWriter struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	start     time.Time
	limit     int64
	rec       []byte // the recorded copy, its capacity reserved from hold
	hold      *holding
	deltas    []store.Delta
	truncated bool
	// overBudget: the copy stopped because max_buffered_bytes was taken.
	overBudget bool
	err        error     // the first write error: the runner went away
	first      time.Time // when the first bytes were written
}

func (c *clientWriter) Write(p []byte) (int, error) {
	// A runner that stops reading cannot hold the answer for ever.
	c.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := c.w.Write(p)
	c.note(p[:n])
	if err != nil {
		c.err = err
	}
	return n, err
}

// writeTimeout bounds one write to the runner.
const writeTimeout = time.Minute

// note records that p reached the runner now.
func (c *clientWriter) note(p []byte) {
	if len(p) > 0 && c.first.IsZero() {
		c.first = time.Now()
	}
	if len(c.deltas) < maxDeltas {
		c.deltas = append(c.deltas, store.Delta{OffsetMS: time.Since(c.start).Milliseconds(), Size: len(p)})
	}
	if c.truncated {
		return
	}
	room := c.limit - int64(len(c.rec))
	keep := p[:min(int64(len(p)), max(room, 0))]
	if need := len(c.rec) + len(keep); need > cap(c.rec) {
		// Grow by doubling (bounded by the limit), reserving the new
		// capacity before allocating it.
		newCap := int64(min(max(need, 2*cap(c.rec), 4<<10), int(c.limit)))
		if c.hold != nil && !c.hold.take(newCap) {
			c.truncated, c.overBudget = true, true
			return
		}
		nb := make([]byte, len(c.rec), newCap)
		copy(nb, c.rec)
		if c.hold != nil {
			c.hold.b.give(int64(cap(c.rec)))
			c.hold.n -= int64(cap(c.rec))
		}
		c.rec = nb
	}
	c.rec = append(c.rec, keep...)
	if len(keep) < len(p) {
		c.truncated = true
	}
}

func (c *clientWriter) flush() {
	c.rc.Flush()
}
