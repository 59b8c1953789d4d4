// Package approval is the human-in-the-loop queue: a request that needs a
// human decision is held in a Queue until an approver approves or denies
// it, it times out, or its client goes away.
//
// Two modes are offered. [Queue.Hold] keeps the caller waiting (the proxy
// keeps the runner's request open). [Queue.Ticket] answers at once with a
// pending ticket; the same request sent again after approval passes, for
// clients with short timeouts.
//
// The package knows nothing of storage or HTTP proxying: the caller records
// decisions and wires the admin API, CLI and web UI on top of an [Inbox]:
// the Queue itself, or a fleet's shared inbox (package central) that lists
// every replica's held requests and hands each decision to the Queue of
// the replica holding the request.
package approval

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Decision values.
const (
	// Pending is the state of a ticket not yet decided.
	Pending  = "pending"
	Approved = "approved"
	Denied   = "denied"
	// Timeout: nobody decided within the queue's timeout.
	Timeout = "timeout"
	// Canceled: the client went away before a decision.
	Canceled = "canceled"
)

// Limits and defaults.
const (
	// DefaultTimeout is how long a request waits when NewQueue is given 0.
	DefaultTimeout = 5 * time.Minute
	// MaxPending bounds the requests waiting at once; Hold and Ticket
	// refuse more with ErrQueueFull.
	MaxPending = 1024
	// PreviewLimit is the longest Request.Prompt kept, in bytes.
	PreviewLimit = 4096
	// TicketTTL is how long an approved ticket may be redeemed, and how
	// long a denied or timed-out one is reported, after the decision.
	TicketTTL = time.Hour
	// maxRecent bounds the decisions remembered for Decide's
	// ErrAlreadyDecided.
	maxRecent = 4096
	// subscriberBuffer is how many events a subscriber may fall behind.
	subscriberBuffer = 64
)

// Errors from Hold, Ticket and Decide; test with errors.Is.
var (
	ErrUnknownID      = errors.New("approval: unknown id")
	ErrAlreadyDecided = errors.New("approval: already decided")
	ErrReasonRequired = errors.New("approval: a denial needs a reason")
	ErrSelfApproval   = errors.New("approval: the requester cannot decide its own request")
	ErrBadDecision    = errors.New(`approval: decision must be "approved" or "denied"`)
	ErrNoApprover     = errors.New("approval: approver name missing")
	ErrQueueFull      = errors.New("approval: too many pending requests")
	ErrDuplicateID    = errors.New("approval: id already in use")
	// ErrNoAnswer: a shared inbox forwarded the decision to the replica
	// holding the request, which did not answer in time; the request is
	// left as it was.
	ErrNoAnswer = errors.New("approval: the replica holding the request did not answer")
	// ErrUnavailable: a shared inbox could not be reached to look the
	// request up or forward the decision.
	ErrUnavailable = errors.New("approval: the shared approval inbox cannot be reached")
)

// Request is a request waiting for a decision, as shown to approvers.
type Request struct {
	ID        string `json:"id"`
	SessionID string `json:"session_id,omitempty"`
	// Requester is the verified identity summary, e.g. "runner ci-1".
	Requester string `json:"requester"`
	// RequesterName is the person or machine behind it (runner name,
	// CI actor). Neither it nor Requester may decide the request.
	RequesterName string `json:"requester_name,omitempty"`
	Host          string `json:"host,omitempty"`
	Method        string `json:"method,omitempty"`
	Path          string `json:"path,omitempty"`
	Model         string `json:"model,omitempty"`
	// Rule names the rule or policy that asked for approval.
	Rule string `json:"rule,omitempty"`
	// Prompt is a masked preview, cut to PreviewLimit bytes.
	Prompt  string    `json:"prompt,omitempty"`
	Created time.Time `json:"created"`
	// Expires is when the request times out; set by the queue.
	Expires time.Time `json:"expires"`
	// Origin names the replica holding the request (its log's origin),
	// set by a fleet's shared inbox; empty from a single queue.
	Origin string `json:"origin,omitempty"`
}

// Decision is the outcome for one request.
type Decision struct {
	ID string `json:"id"`
	// Decision is Approved, Denied, Timeout, Canceled, or Pending (tickets).
	Decision string `json:"decision"`
	// By is the approver's name; empty for Timeout and Canceled.
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Event types.
const (
	EventHeld    = "held"
	EventDecided = "decided"
)

// Event is a change in the queue, for live views.
type Event struct {
	// Type is EventHeld or EventDecided.
	Type    string  `json:"type"`
	Request Request `json:"request"`
	// Decision is set for EventDecided.
	Decision *Decision `json:"decision,omitempty"`
}

// entry is a waiting request.
type entry struct {
	req  Request
	done chan Decision // buffered, receives the one decision
	// ticketKey is set for tickets, which nobody waits on.
	ticketKey string
	timer     *time.Timer
}

// ticket is the state of one ticket-mode request.
type ticket struct {
	id       string
	decision Decision
	// expires is when the ticket is forgotten.
	expires time.Time
}

// Queue holds requests until they are decided. It is safe for concurrent
// use. The zero Queue is not usable; call NewQueue.
type Queue struct {
	timeout time.Duration
	now     func() time.Time

	mu          sync.Mutex
	pending     map[string]*entry
	recent      map[string]Decision
	recentOrder []string
	tickets     map[string]*ticket
	subs        map[chan Event]struct{}
}

// NewQueue returns a queue whose requests time out after timeout
// (DefaultTimeout if timeout <= 0).
func NewQueue(timeout time.Duration) *Queue {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Queue{
		timeout: timeout,
		now:     time.Now,
		pending: make(map[string]*entry),
		recent:  make(map[string]Decision),
		tickets: make(map[string]*ticket),
		subs:    make(map[chan Event]struct{}),
	}
}

// Timeout returns how long a request waits for a decision.
func (q *Queue) Timeout() time.Duration { return q.timeout }

// NewID returns a fresh random request id (16 lowercase base32 characters),
// for callers that must know the id before calling Hold.
func NewID() string {
	var b [10]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// Hold queues r and blocks until it is decided, it times out, or ctx is
// done (the client went away). r.ID is assigned when empty. A timeout gives
// a Decision of Timeout and a nil error; a done ctx gives Canceled and
// ctx.Err().
func (q *Queue) Hold(ctx context.Context, r Request) (Decision, error) {
	e, err := q.add(r)
	if err != nil {
		return Decision{}, err
	}
	id := e.req.ID
	timer := time.NewTimer(q.timeout)
	defer timer.Stop()
	select {
	case d := <-e.done:
		return d, nil
	case <-timer.C:
		q.finish(id, Decision{ID: id, Decision: Timeout, At: q.now()})
		return <-e.done, nil
	case <-ctx.Done():
		q.finish(id, Decision{ID: id, Decision: Canceled, At: q.now()})
		d := <-e.done // ours, or a decision that won the race
		if d.Decision == Canceled {
			return d, ctx.Err()
		}
		return d, nil
	}
}

// add registers a pending request and publishes EventHeld.
func (q *Queue) add(r Request) (*entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.addLocked(r, "")
}

// addLocked is add with q.mu held; ticketKey is set for tickets.
func (q *Queue) addLocked(r Request, ticketKey string) (*entry, error) {
	if r.ID == "" {
		r.ID = NewID()
	}
	now := q.now()
	if r.Created.IsZero() {
		r.Created = now
	}
	r.Expires = now.Add(q.timeout)
	r.Prompt = cut(r.Prompt, PreviewLimit)
	if len(q.pending) >= MaxPending {
		return nil, ErrQueueFull
	}
	if _, dup := q.pending[r.ID]; dup {
		return nil, fmt.Errorf("%w: %s", ErrDuplicateID, r.ID)
	}
	if _, dup := q.recent[r.ID]; dup {
		return nil, fmt.Errorf("%w: %s", ErrDuplicateID, r.ID)
	}
	e := &entry{req: r, done: make(chan Decision, 1), ticketKey: ticketKey}
	q.pending[r.ID] = e
	q.publish(Event{Type: EventHeld, Request: r})
	return e, nil
}

// finish ends a pending request with d, unless it already ended. It
// reports whether d was the decision.
func (q *Queue) finish(id string, d Decision) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.finishLocked(id, d)
}

func (q *Queue) finishLocked(id string, d Decision) bool {
	e, ok := q.pending[id]
	if !ok {
		return false
	}
	delete(q.pending, id)
	if e.timer != nil {
		e.timer.Stop()
	}
	q.remember(d)
	if t := q.tickets[e.ticketKey]; e.ticketKey != "" && t != nil && t.id == id {
		t.decision = d
		t.expires = d.At.Add(TicketTTL)
	}
	e.done <- d
	q.publish(Event{Type: EventDecided, Request: e.req, Decision: &d})
	return true
}

// remember keeps d for ErrAlreadyDecided, forgetting the oldest beyond
// maxRecent.
func (q *Queue) remember(d Decision) {
	if len(q.recentOrder) >= maxRecent {
		delete(q.recent, q.recentOrder[0])
		q.recentOrder = q.recentOrder[1:]
	}
	q.recent[d.ID] = d
	q.recentOrder = append(q.recentOrder, d.ID)
}

// Decide approves or denies the pending request id on behalf of approver
// by. decision is Approved or Denied; a denial needs a reason. It fails
// with ErrUnknownID, ErrAlreadyDecided (the earlier decision is returned
// too), ErrReasonRequired, ErrSelfApproval when by is the requester, or
// ErrBadDecision / ErrNoApprover.
func (q *Queue) Decide(id, decision, by, reason string) (Decision, error) {
	by = strings.TrimSpace(by)
	reason = strings.TrimSpace(reason)
	switch {
	case decision != Approved && decision != Denied:
		return Decision{}, ErrBadDecision
	case by == "":
		return Decision{}, ErrNoApprover
	case decision == Denied && reason == "":
		return Decision{}, ErrReasonRequired
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.pending[id]
	if !ok {
		if d, ok := q.recent[id]; ok {
			return d, fmt.Errorf("%w: %s", ErrAlreadyDecided, d.Decision)
		}
		return Decision{}, fmt.Errorf("%w: %q", ErrUnknownID, id)
	}
	if isRequester(e.req, by) {
		return Decision{}, ErrSelfApproval
	}
	d := Decision{ID: id, Decision: decision, By: by, Reason: reason, At: q.now()}
	q.finishLocked(id, d)
	return d, nil
}

// isRequester reports whether approver by is the request's own identity.
func isRequester(r Request, by string) bool {
	return strings.EqualFold(by, strings.TrimSpace(r.Requester)) ||
		(r.RequesterName != "" && strings.EqualFold(by, strings.TrimSpace(r.RequesterName)))
}

// Pending returns the requests waiting for a decision, oldest first.
func (q *Queue) Pending() []Request {
	q.mu.Lock()
	out := make([]Request, 0, len(q.pending))
	for _, e := range q.pending {
		out = append(out, e.req)
	}
	q.mu.Unlock()
	slices.SortFunc(out, func(a, b Request) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Get returns the pending request id.
func (q *Queue) Get(id string) (Request, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.pending[id]
	if !ok {
		return Request{}, false
	}
	return e.req, true
}

// Subscribe returns a channel of queue events until ctx is done, when the
// channel is closed. A subscriber that falls more than 64 events behind is
// dropped (its channel closes early); it may subscribe again and re-read
// Pending.
func (q *Queue) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, subscriberBuffer)
	q.mu.Lock()
	q.subs[ch] = struct{}{}
	q.mu.Unlock()
	context.AfterFunc(ctx, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if _, ok := q.subs[ch]; ok {
			delete(q.subs, ch)
			close(ch)
		}
	})
	return ch
}

// publish sends ev to every subscriber without blocking. q.mu is held.
func (q *Queue) publish(ev Event) {
	for ch := range q.subs {
		select {
		case ch <- ev:
		default:
			delete(q.subs, ch)
			close(ch)
		}
	}
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
