package central

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessctl/sessctl/approval"
)

// approvalChannel is the LISTEN/NOTIFY channel of the shared inbox. Its
// payloads are "held ID HOLDER", "decided ID HOLDER", "ask ASK HOLDER" and
// "answer ASK".
const approvalChannel = "sessctl_approvals"

// Defaults of [InboxOptions].
const (
	// DefaultInboxPoll is how often the inbox looks for asks and
	// answers without a notification (the fallback when one is lost).
	DefaultInboxPoll = 2 * time.Second
	// DefaultInboxAnswer is how long Decide waits for the holding
	// replica to take a forwarded decision.
	DefaultInboxAnswer = 10 * time.Second
	// decidedKeep is how long decided rows stay in sessctl_approvals
	// before their holder deletes them.
	decidedKeep = 24 * time.Hour
	// inboxQueryTimeout bounds the inbox's reads (Pending, Get), which have no
	// context of their own.
	inboxQueryTimeout = 3 * time.Second
)

// InboxOptions configure an [Inbox].
type InboxOptions struct {
	// Queue is this replica's approval queue; nil for an inbox that only
	// lists and forwards decisions (sessctl console).
	Queue *approval.Queue
	// Origin names this replica (its log's origin); required with Queue.
	Origin string
	// PollInterval is DefaultInboxPoll if zero.
	PollInterval time.Duration
	// AnswerTimeout is DefaultInboxAnswer if zero.
	AnswerTimeout time.Duration
	// Ready, if set, is called before each attempt to use PostgreSQL
	// (DB.Ready: connect and migrate once PostgreSQL is reachable).
	Ready  func(context.Context) error
	Logger *slog.Logger
}

// Inbox is a fleet's shared approval inbox in PostgreSQL. It implements
// [approval.Inbox] for the admin API and UI of every replica and of the
// console.
//
// The replica holding a request stays the only one that decides it: Run
// mirrors the local queue's held and decided requests into
// sessctl_approvals, and hands every decision asked for elsewhere to the
// local queue (Queue.Decide), answering with the queue's decision or
// refusal. A decision on a request this replica holds goes straight to the
// local queue, so the replica's own admin API keeps deciding its held
// requests while PostgreSQL is unreachable.
type Inbox struct {
	pool *pgxpool.Pool
	q    *approval.Queue
	o    InboxOptions
	log  *slog.Logger

	// askMu serialises the processing of asks.
	askMu sync.Mutex

	mu      sync.Mutex
	waiters map[int64]chan struct{}
	subs    map[chan approval.Event]struct{}
}

var _ approval.Inbox = (*Inbox)(nil)

// NewInbox returns the shared inbox on pool. The schema must be migrated
// ([Migrate]). Call Run for the inbox to mirror the queue and learn of
// decisions and events.
func NewInbox(pool *pgxpool.Pool, o InboxOptions) (*Inbox, error) {
	if o.Queue != nil && o.Origin == "" {
		return nil, errors.New("central: inbox: a queue needs the replica's origin")
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultInboxPoll
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = DefaultInboxAnswer
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Inbox{
		pool: pool, q: o.Queue, o: o, log: o.Logger,
		waiters: make(map[int64]chan struct{}),
		subs:    make(map[chan approval.Event]struct{}),
	}, nil
}

// Run keeps the inbox working until ctx is done: it mirrors the local
// queue into PostgreSQL, listens for notifications, and polls as a
// fallback. PostgreSQL being unreachable is logged and retried, never
// fatal. It returns nil when ctx is done.
func (in *Inbox) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if in.q != nil {
		wg.Add(1)
		go func() { defer wg.Done(); in.mirror(ctx) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); in.listen(ctx) }()
	go func() { defer wg.Done(); in.poll(ctx) }()
	wg.Wait()
	return nil
}

// mirror writes the local queue's events to PostgreSQL, rebuilding the
// mirror from the queue whenever a write failed or events were lost.
func (in *Inbox) mirror(ctx context.Context) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		events := in.q.Subscribe(sctx)
		ok := in.ready(ctx) == nil && in.sync(ctx) == nil
		for ok {
			select {
			case <-ctx.Done():
				ok = false
			case ev, open := <-events:
				if !open {
					ok = false
					break
				}
				if err := in.write(ctx, ev); err != nil {
					in.log.Warn("central: approvals: mirroring a queue event failed; will resync", "id", ev.Request.ID, "err", err)
					ok = false
				}
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(in.retry()):
		}
	}
}

// ready calls the Ready option.
func (in *Inbox) ready(ctx context.Context) error {
	if in.o.Ready == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 4*inboxQueryTimeout)
	defer cancel()
	return in.o.Ready(ctx)
}

// retry is how long to wait before trying PostgreSQL again.
func (in *Inbox) retry() time.Duration { return min(in.o.PollInterval, time.Second) }

// write mirrors one local queue event.
func (in *Inbox) write(ctx context.Context, ev approval.Event) error {
	ctx, cancel := context.WithTimeout(ctx, inboxQueryTimeout)
	defer cancel()
	switch ev.Type {
	case approval.EventHeld:
		return in.insertHeld(ctx, ev.Request)
	case approval.EventDecided:
		if ev.Decision == nil {
			return nil
		}
		return in.writeDecided(ctx, *ev.Decision)
	}
	return nil
}

func (in *Inbox) insertHeld(ctx context.Context, r approval.Request) error {
	r.Origin = in.o.Origin
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, in.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO sessctl_approvals (id, holder, request, created, expires)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`, r.ID, in.o.Origin, b, r.Created, r.Expires)
		if err != nil {
			return fmt.Errorf("central: approvals: insert %s: %w", r.ID, err)
		}
		if tag.RowsAffected() == 1 {
			return notifyInbox(ctx, tx, "held "+r.ID+" "+in.o.Origin)
		}
		return nil
	})
}

func (in *Inbox) writeDecided(ctx context.Context, d approval.Decision) error {
	return pgx.BeginFunc(ctx, in.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sessctl_approvals SET decision = $2, decided_by = nullif($3, ''), reason = nullif($4, ''), decided_at = $5
WHERE id = $1 AND holder = $6 AND decision = 'pending'`, d.ID, d.Decision, d.By, d.Reason, d.At, in.o.Origin)
		if err != nil {
			return fmt.Errorf("central: approvals: decide %s: %w", d.ID, err)
		}
		if tag.RowsAffected() == 1 {
			return notifyInbox(ctx, tx, "decided "+d.ID+" "+in.o.Origin)
		}
		return nil
	})
}

// sync makes this holder's rows match the local queue: every pending
// request is written, and every row still pending in PostgreSQL but no
// longer in the queue gets the queue's decision (or canceled, when the
// queue has forgotten it or this process restarted).
func (in *Inbox) sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*inboxQueryTimeout)
	defer cancel()
	pending := in.q.Pending()
	ids := make([]string, 0, len(pending))
	for _, r := range pending {
		if err := in.insertHeld(ctx, r); err != nil {
			in.log.Warn("central: approvals: cannot reach the shared inbox; deciding locally only until it is back", "err", err)
			return err
		}
		ids = append(ids, r.ID)
	}
	rows, err := in.pool.Query(ctx, `SELECT id FROM sessctl_approvals WHERE holder = $1 AND decision = 'pending' AND NOT (id = ANY($2))`, in.o.Origin, ids)
	if err != nil {
		return fmt.Errorf("central: approvals: sync: %w", err)
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("central: approvals: sync: %w", err)
	}
	for _, id := range stale {
		d, ok := in.q.Decided(id)
		if !ok {
			d = approval.Decision{ID: id, Decision: approval.Canceled, At: time.Now()}
		}
		if err := in.writeDecided(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// notify sends payload on the inbox's channel when tx commits.
func notifyInbox(ctx context.Context, tx pgx.Tx, payload string) error {
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", approvalChannel, payload); err != nil {
		return fmt.Errorf("central: approvals: notify: %w", err)
	}
	return nil
}

// listen holds a connection LISTENing on the inbox's channel, reconnecting
// after failures.
func (in *Inbox) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := in.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		in.log.Warn("central: approvals: listening for notifications failed; polling until it is back", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(in.retry()):
		}
	}
}

func (in *Inbox) listenOnce(ctx context.Context) error {
	if err := in.ready(ctx); err != nil {
		return err
	}
	conn, err := in.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection that LISTENed is not given back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN "+approvalChannel); err != nil {
		return err
	}
	// Anything that happened while not listening.
	in.wakeAll()
	if in.q != nil {
		in.processAsks(ctx)
	}
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		in.handle(ctx, n.Payload)
	}
}

// handle acts on one notification.
func (in *Inbox) handle(ctx context.Context, payload string) {
	f := strings.Fields(payload)
	if len(f) < 2 {
		return
	}
	switch {
	case f[0] == "ask" && len(f) == 3 && in.q != nil && f[2] == in.o.Origin:
		in.processAsks(ctx)
	case f[0] == "answer":
		if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			in.wake(n)
		}
	case (f[0] == "held" || f[0] == "decided") && len(f) == 3:
		if in.q != nil && f[2] == in.o.Origin {
			return // the local queue's subscribers have it
		}
		if ev, ok := in.loadEvent(ctx, f[0], f[1]); ok {
			in.publish(ev)
		}
	}
}

// poll is the fallback for lost notifications: it processes open asks,
// wakes every waiting Decide, and deletes old decided rows.
func (in *Inbox) poll(ctx context.Context) {
	t := time.NewTicker(in.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		in.wakeAll()
		if in.q == nil {
			continue
		}
		in.processAsks(ctx)
		cctx, cancel := context.WithTimeout(ctx, inboxQueryTimeout)
		in.pool.Exec(cctx, `DELETE FROM sessctl_approvals WHERE holder = $1 AND decision <> 'pending' AND decided_at < $2`,
			in.o.Origin, time.Now().Add(-decidedKeep))
		cancel()
	}
}

// ask is a decision asked for on another replica.
type ask struct {
	id                           int64
	approvalID, decision, by, rs string
}

// processAsks hands this holder's open asks to the local queue, oldest
// first, and answers each.
func (in *Inbox) processAsks(ctx context.Context) {
	in.askMu.Lock()
	defer in.askMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 4*inboxQueryTimeout)
	defer cancel()
	rows, err := in.pool.Query(ctx, `UPDATE sessctl_approval_asks SET claimed_at = coalesce(claimed_at, now())
WHERE holder = $1 AND answered_at IS NULL
RETURNING id, approval_id, decision, decided_by, reason`, in.o.Origin)
	if err != nil {
		in.log.Warn("central: approvals: reading asks failed", "err", err)
		return
	}
	asks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ask, error) {
		var a ask
		err := r.Scan(&a.id, &a.approvalID, &a.decision, &a.by, &a.rs)
		return a, err
	})
	if err != nil {
		in.log.Warn("central: approvals: reading asks failed", "err", err)
		return
	}
	slices.SortFunc(asks, func(a, b ask) int { return int(a.id - b.id) })
	for _, a := range asks {
		d, err := in.q.Decide(a.approvalID, a.decision, a.by, a.rs)
		if errors.Is(err, approval.ErrAlreadyDecided) && d.Decision == a.decision && strings.EqualFold(d.By, strings.TrimSpace(a.by)) {
			err = nil // this ask decided it before its answer could be written
		}
		if err == nil {
			in.log.Info("approval decided", "id", a.approvalID, "decision", d.Decision, "by", d.By, "via", "shared inbox")
		}
		code, msg := askErrorCode(err), ""
		if err != nil {
			msg = err.Error()
		}
		b, _ := json.Marshal(d)
		err = pgx.BeginFunc(ctx, in.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE sessctl_approval_asks SET answered_at = now(), result = $2, error_code = nullif($3, ''), error = nullif($4, '')
WHERE id = $1`, a.id, b, code, msg); err != nil {
				return err
			}
			return notifyInbox(ctx, tx, "answer "+strconv.FormatInt(a.id, 10))
		})
		if err != nil {
			in.log.Warn("central: approvals: answering an ask failed; will retry", "ask", a.id, "err", err)
			return
		}
	}
}

// Error codes of an answer, and the errors they stand for.
var askErrorCodes = []struct {
	code string
	err  error
}{
	{"unknown", approval.ErrUnknownID},
	{"already_decided", approval.ErrAlreadyDecided},
	{"reason_required", approval.ErrReasonRequired},
	{"self_approval", approval.ErrSelfApproval},
	{"bad_decision", approval.ErrBadDecision},
	{"no_approver", approval.ErrNoApprover},
}

func askErrorCode(err error) string {
	if err == nil {
		return ""
	}
	for _, c := range askErrorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "other"
}

func askError(code, msg string) error {
	for _, c := range askErrorCodes {
		if c.code == code {
			if msg == "" || msg == c.err.Error() {
				return c.err
			}
			return fmt.Errorf("%w (%s)", c.err, strings.TrimPrefix(msg, c.err.Error()+": "))
		}
	}
	return fmt.Errorf("central: approvals: the holding replica refused: %s", msg)
}

// Decide approves or denies request id. A request held by this replica is
// decided by its queue directly; any other is forwarded to its holder
// through PostgreSQL, and Decide waits (up to AnswerTimeout) for the
// holder's answer: its decision, or its queue's refusal
// (approval.ErrSelfApproval, ErrAlreadyDecided, ...). When the holder does
// not take the ask in time, the ask is withdrawn and Decide fails with
// approval.ErrNoAnswer.
func (in *Inbox) Decide(id, decision, by, reason string) (approval.Decision, error) {
	if in.q != nil {
		_, held := in.q.Get(id)
		_, decided := in.q.Decided(id)
		if held || decided {
			return in.q.Decide(id, decision, by, reason)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.o.AnswerTimeout+inboxQueryTimeout)
	defer cancel()
	askID, wake, d, err := in.sendAsk(ctx, id, decision, by, reason)
	if err != nil {
		if !errors.Is(err, approval.ErrUnknownID) && !errors.Is(err, approval.ErrAlreadyDecided) && !errors.Is(err, approval.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", approval.ErrUnavailable, err)
		}
		return d, err
	}
	defer in.unwait(askID)
	deadline := time.Now().Add(in.o.AnswerTimeout)
	retry := time.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	for {
		d, done, err := in.answer(ctx, askID)
		if done {
			return d, err
		}
		if time.Now().After(deadline) {
			if withdrawn, err := in.withdraw(ctx, askID); err != nil || withdrawn {
				return approval.Decision{}, fmt.Errorf("%w: %s", approval.ErrNoAnswer, id)
			}
			// The holder took it meanwhile: wait a little longer.
			deadline = time.Now().Add(in.o.AnswerTimeout)
		}
		select {
		case <-wake:
		case <-retry.C:
		case <-ctx.Done():
			return approval.Decision{}, fmt.Errorf("%w: %s", approval.ErrNoAnswer, id)
		}
	}
}

// sendAsk records an ask for the holder of id and notifies it. It returns
// the ask's id and a channel signalled on the answer; for a request
// already decided, the decision and approval.ErrAlreadyDecided.
func (in *Inbox) sendAsk(ctx context.Context, id, decision, by, reason string) (int64, chan struct{}, approval.Decision, error) {
	var askID int64
	var wake chan struct{}
	var prior approval.Decision
	err := pgx.BeginFunc(ctx, in.pool, func(tx pgx.Tx) error {
		var holder, state string
		var dby, dreason *string
		var at *time.Time
		var expires time.Time
		err := tx.QueryRow(ctx, `SELECT holder, decision, decided_by, reason, decided_at, expires FROM sessctl_approvals WHERE id = $1 FOR SHARE`, id).
			Scan(&holder, &state, &dby, &dreason, &at, &expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", approval.ErrUnknownID, id)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", approval.ErrUnavailable, err)
		}
		if state != approval.Pending {
			prior = approval.Decision{ID: id, Decision: state, By: stringOr(dby), Reason: stringOr(dreason)}
			if at != nil {
				prior.At = *at
			}
			return fmt.Errorf("%w: %s", approval.ErrAlreadyDecided, state)
		}
		if time.Now().After(expires.Add(in.o.PollInterval + inboxQueryTimeout)) {
			// Its holder should have timed it out: the holder is gone.
			return fmt.Errorf("%w: %q", approval.ErrUnknownID, id)
		}
		if err := tx.QueryRow(ctx, `INSERT INTO sessctl_approval_asks (approval_id, holder, decision, decided_by, reason)
VALUES ($1, $2, $3, $4, $5) RETURNING id`, id, holder, decision, by, reason).Scan(&askID); err != nil {
			return fmt.Errorf("central: approvals: ask: %w", err)
		}
		wake = in.wait(askID)
		return notifyInbox(ctx, tx, "ask "+strconv.FormatInt(askID, 10)+" "+holder)
	})
	if err != nil {
		if askID != 0 {
			in.unwait(askID)
		}
		return 0, nil, prior, err
	}
	return askID, wake, prior, nil
}

// answer reads the holder's answer to ask askID, if any.
func (in *Inbox) answer(ctx context.Context, askID int64) (approval.Decision, bool, error) {
	var result []byte
	var code, msg *string
	var answered *time.Time
	err := in.pool.QueryRow(ctx, `SELECT answered_at, result, error_code, error FROM sessctl_approval_asks WHERE id = $1`, askID).
		Scan(&answered, &result, &code, &msg)
	if err != nil || answered == nil {
		return approval.Decision{}, false, nil // not yet, or retry the read
	}
	var d approval.Decision
	if len(result) > 0 {
		json.Unmarshal(result, &d)
	}
	if code != nil {
		m := ""
		if msg != nil {
			m = *msg
		}
		return d, true, askError(*code, m)
	}
	return d, true, nil
}

// withdraw takes back an ask the holder has not claimed. It reports
// whether it did.
func (in *Inbox) withdraw(ctx context.Context, askID int64) (bool, error) {
	tag, err := in.pool.Exec(ctx, `UPDATE sessctl_approval_asks SET answered_at = now(), error_code = 'withdrawn', error = 'the holding replica did not answer'
WHERE id = $1 AND answered_at IS NULL AND claimed_at IS NULL`, askID)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

func (in *Inbox) wait(askID int64) chan struct{} {
	ch := make(chan struct{}, 1)
	in.mu.Lock()
	in.waiters[askID] = ch
	in.mu.Unlock()
	return ch
}

func (in *Inbox) unwait(askID int64) {
	in.mu.Lock()
	delete(in.waiters, askID)
	in.mu.Unlock()
}

func (in *Inbox) wake(askID int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if ch, ok := in.waiters[askID]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (in *Inbox) wakeAll() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, ch := range in.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Pending returns the requests pending on every replica, oldest first,
// each naming its holder in Origin. Rows past their expiry (a holder that
// went away) are left out. When PostgreSQL cannot be read, it returns this
// replica's own pending requests.
func (in *Inbox) Pending() []approval.Request {
	byID := map[string]approval.Request{}
	if in.q != nil {
		for _, r := range in.q.Pending() {
			r.Origin = in.o.Origin
			byID[r.ID] = r
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), inboxQueryTimeout)
	defer cancel()
	rows, err := in.pool.Query(ctx, `SELECT request FROM sessctl_approvals WHERE decision = 'pending' AND expires > now() ORDER BY created, id LIMIT $1`, approval.MaxPending*4)
	if err == nil {
		var rs []approval.Request
		rs, err = pgx.CollectRows(rows, pgx.RowTo[approval.Request])
		for _, r := range rs {
			if in.q != nil && r.Origin == in.o.Origin {
				continue // the local queue is authoritative for its own
			}
			byID[r.ID] = r
		}
	}
	if err != nil {
		in.log.Warn("central: approvals: cannot read the shared inbox; listing this replica's requests only", "err", err)
	}
	out := make([]approval.Request, 0, len(byID))
	for _, r := range byID {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b approval.Request) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Get returns the pending request id, from this replica's queue or from
// PostgreSQL.
func (in *Inbox) Get(id string) (approval.Request, bool) {
	if in.q != nil {
		if r, ok := in.q.Get(id); ok {
			r.Origin = in.o.Origin
			return r, true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), inboxQueryTimeout)
	defer cancel()
	var r approval.Request
	err := in.pool.QueryRow(ctx, `SELECT request FROM sessctl_approvals WHERE id = $1 AND decision = 'pending' AND expires > now()`, id).Scan(&r)
	if err != nil {
		if !errors.Is(err, pgx.ErrNoRows) {
			in.log.Warn("central: approvals: cannot read the shared inbox", "err", err)
		}
		return approval.Request{}, false
	}
	return r, true
}

// loadEvent reads the event a notification announces.
func (in *Inbox) loadEvent(ctx context.Context, typ, id string) (approval.Event, bool) {
	ctx, cancel := context.WithTimeout(ctx, inboxQueryTimeout)
	defer cancel()
	var r approval.Request
	var state string
	var by, reason *string
	var at *time.Time
	err := in.pool.QueryRow(ctx, `SELECT request, decision, decided_by, reason, decided_at FROM sessctl_approvals WHERE id = $1`, id).
		Scan(&r, &state, &by, &reason, &at)
	if err != nil {
		return approval.Event{}, false
	}
	ev := approval.Event{Type: approval.EventHeld, Request: r}
	if typ == "decided" {
		d := approval.Decision{ID: id, Decision: state, By: stringOr(by), Reason: stringOr(reason)}
		if at != nil {
			d.At = *at
		}
		ev.Type, ev.Decision = approval.EventDecided, &d
	}
	return ev, true
}

func stringOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// inboxSubscriberBuffer is how many events a subscriber may fall behind before
// it is dropped (as with approval.Queue).
const inboxSubscriberBuffer = 64

// Subscribe returns the events of every replica's requests until ctx is
// done: this replica's from its queue, the others' as PostgreSQL notifies
// them. A subscriber that falls behind is dropped (its channel closes);
// it may subscribe again and re-read Pending.
func (in *Inbox) Subscribe(ctx context.Context) <-chan approval.Event {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan approval.Event, inboxSubscriberBuffer)
	remote := make(chan approval.Event, inboxSubscriberBuffer)
	in.mu.Lock()
	in.subs[remote] = struct{}{}
	in.mu.Unlock()
	var local <-chan approval.Event
	if in.q != nil {
		local = in.q.Subscribe(ctx)
	}
	go func() {
		defer close(out)
		defer cancel()
		defer func() {
			in.mu.Lock()
			delete(in.subs, remote)
			in.mu.Unlock()
		}()
		for {
			var ev approval.Event
			var ok bool
			select {
			case <-ctx.Done():
				return
			case ev, ok = <-local:
				if ok {
					ev.Request.Origin = in.o.Origin
				}
			case ev, ok = <-remote:
			}
			if !ok {
				return
			}
			select {
			case out <- ev:
			default:
				return // fell behind
			}
		}
	}()
	return out
}

// publish sends ev to every subscriber without blocking; one that is full
// is dropped.
func (in *Inbox) publish(ev approval.Event) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for ch := range in.subs {
		select {
		case ch <- ev:
		default:
			delete(in.subs, ch)
			close(ch)
		}
	}
}
