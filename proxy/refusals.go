package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/store"
)

// Bounds on what one refusal of an unauthenticated client copies into its
// record, whatever the client sent.
const (
	maxRefusedHost   = 255
	maxRefusedPath   = 256
	maxRefusedReason = 300
	maxRefusedMethod = 16
	maxRefusedExtra  = 255
)

// Limits of the refusal summaries: the distinct (target, kind) groups one
// source gets per interval before further ones merge into target "*", and
// the sources tracked at once before further ones merge into source "*".
const (
	maxSummaryTargets = 8
	maxSummarySources = 4096
)

// RefusalLimits bound how fast refusals of unauthenticated clients make
// the log grow. Each source address may have Burst refusals recorded one
// by one, refilled at PerMinute; beyond that its refusals are counted and
// merged into one summary record per (source, target, kind) and Interval,
// with the count and the first and last time. So one source adds at most
// Burst + PerMinute·t/1min + 9·t/Interval records in t, each at most
// about 1 KB (see README "Refusals and floods").
type RefusalLimits struct {
	PerMinute int
	Burst     int
	Interval  time.Duration
}

// refusalLog applies RefusalLimits.
type refusalLog struct {
	lim RefusalLimits
	now func() time.Time

	mu      sync.Mutex
	sources map[netip.Addr]*refusalSource
	// summaryOnly, when true, merges every refusal (the disk is below
	// its reserve: count, do not record one by one).
	summaryOnly func() bool
}

type refusalSource struct {
	tokens float64
	last   time.Time
	groups map[summaryKey]*refusalSummary
}

type summaryKey struct{ target, kind string }

type refusalSummary struct {
	count       int64
	first, last time.Time
	// The first refusal of the group, for the summary's common fields.
	mode, method, outcome string
	status                int
}

// overflowAddr stands for sources beyond maxSummarySources.
var overflowAddr = netip.IPv6Unspecified()

func newRefusalLog(lim RefusalLimits, summaryOnly func() bool) *refusalLog {
	return &refusalLog{lim: lim, now: time.Now, sources: make(map[netip.Addr]*refusalSource), summaryOnly: summaryOnly}
}

// sourceAddr is the address part of a client's host:port.
func sourceAddr(client string) netip.Addr {
	ap, err := netip.ParseAddrPort(client)
	if err != nil {
		return overflowAddr
	}
	return ap.Addr().Unmap()
}

// admit reports whether a refusal of kind from client (to target) is
// recorded on its own; if not, it has been counted in a summary.
func (l *refusalLog) admit(client, target, kind string, rec *store.Record) bool {
	now := l.now()
	addr := sourceAddr(client)
	l.mu.Lock()
	defer l.mu.Unlock()
	src := l.sources[addr]
	if src == nil {
		if len(l.sources) >= maxSummarySources {
			addr = overflowAddr
			src = l.sources[addr]
		}
		if src == nil {
			src = &refusalSource{tokens: float64(l.lim.Burst), last: now}
			l.sources[addr] = src
		}
	}
	if addr != overflowAddr && (l.summaryOnly == nil || !l.summaryOnly()) {
		src.tokens = min(float64(l.lim.Burst), src.tokens+now.Sub(src.last).Minutes()*float64(l.lim.PerMinute))
		src.last = now
		if src.tokens >= 1 {
			src.tokens--
			return true
		}
	}
	if src.groups == nil {
		src.groups = make(map[summaryKey]*refusalSummary)
	}
	k := summaryKey{truncate(target, maxRefusedHost), kind}
	g := src.groups[k]
	if g == nil && len(src.groups) >= maxSummaryTargets {
		k.target = "*"
		g = src.groups[k]
	}
	if g == nil {
		g = &refusalSummary{first: now, mode: rec.Conn.Mode, method: truncate(rec.Method, maxRefusedMethod), outcome: string(rec.Outcome), status: rec.Status}
		src.groups[k] = g
	}
	g.count++
	g.last = now
	return false
}

// take returns the summary records of the interval that ends and forgets
// sources with nothing pending and a full bucket.
func (l *refusalLog) take() []*store.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var out []*store.Record
	for addr, src := range l.sources {
		for k, g := range src.groups {
			source := addr.String()
			if addr == overflowAddr {
				source = "*"
			}
			out = append(out, &store.Record{
				Kind:      store.KindRefused,
				SessionID: uuid.Must(uuid.NewV7()).String(),
				Start:     g.first.UTC(),
				End:       g.last.UTC(),
				Conn:      store.Conn{Mode: g.mode, Client: source},
				Host:      k.target,
				Method:    g.method,
				Status:    g.status,
				Outcome:   store.Outcome(g.outcome),
				Reason:    fmt.Sprintf("%d refusals (%s) from %s merged into this summary", g.count, k.kind, source),
				Extra: map[string]string{
					"summary": "true", "kind": k.kind, "count": strconv.FormatInt(g.count, 10),
					"first": g.first.UTC().Format(time.RFC3339Nano), "last": g.last.UTC().Format(time.RFC3339Nano),
				},
			})
		}
		src.groups = nil
		refill := src.tokens + now.Sub(src.last).Minutes()*float64(l.lim.PerMinute)
		if refill >= float64(l.lim.Burst) {
			delete(l.sources, addr)
		}
	}
	return out
}

// boundRefusal cuts everything a refusal copies from the client to its
// bounds.
func boundRefusal(r *store.Record) {
	r.Host = truncate(r.Host, maxRefusedHost)
	r.Path = truncate(r.Path, maxRefusedPath)
	r.Method = truncate(r.Method, maxRefusedMethod)
	r.Reason = truncate(r.Reason, maxRefusedReason)
	r.Conn.Client = truncate(r.Conn.Client, 64)
	r.Meta = nil
	for k, v := range r.Extra {
		r.Extra[k] = truncate(v, maxRefusedExtra)
	}
}

// runSummaries writes the refusal summaries every interval until ctx is
// done.
func (s *Server) runSummaries(ctx context.Context) {
	t := time.NewTicker(s.refusals.lim.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flushSummaries()
		}
	}
}

// flushSummaries appends the pending refusal summaries.
func (s *Server) flushSummaries() {
	for _, r := range s.refusals.take() {
		s.opt.Metrics.refusalSummaries.Inc()
		if _, err := s.opt.Store.Append(context.Background(), r); err != nil {
			s.recordErrs.log(s.log, "cannot record refusal summary", err)
			s.opt.Metrics.recordErrors.Inc()
		}
	}
}
