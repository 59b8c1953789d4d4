package central

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/internal/pgtest"
	"github.com/sessctl/sessctl/internal/testutil"
)

// migratedPool starts a throwaway cluster, migrates it and returns a pool.
func migratedPool(t *testing.T) (*pgtest.Server, *pgxpool.Pool) {
	t.Helper()
	pg := pgtest.Start(t)
	pool, err := pgxpool.New(context.Background(), pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return pg, pool
}

// replica is one approval queue with its shared inbox running.
type replica struct {
	q  *approval.Queue
	in *Inbox
}

func startInbox(t *testing.T, pool *pgxpool.Pool, origin string, q *approval.Queue) *Inbox {
	t.Helper()
	// A long poll interval: decisions must arrive by notification.
	in, err := NewInbox(pool, InboxOptions{Queue: q, Origin: origin, PollInterval: time.Minute, AnswerTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return in
}

type held struct {
	d   approval.Decision
	err error
}

// hold holds a request from runner ci-1 on q in the background.
func hold(q *approval.Queue, id string) <-chan held {
	ch := make(chan held, 1)
	go func() {
		d, err := q.Hold(context.Background(), approval.Request{ID: id, Requester: "runner ci-1", RequesterName: "ci-1", Host: "api.openai.com", Rule: "needs-human"})
		ch <- held{d, err}
	}()
	return ch
}

func waitHeld(t *testing.T, ch <-chan held) held {
	t.Helper()
	select {
	case h := <-ch:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("the held request was not decided")
	}
	return held{}
}

func pendingIn(in approval.Inbox, id string) (approval.Request, bool) {
	for _, r := range in.Pending() {
		if r.ID == id {
			return r, true
		}
	}
	return approval.Request{}, false
}

func TestInboxAcrossReplicas(t *testing.T) {
	pg, pool := migratedPool(t)
	qa, qb := approval.NewQueue(time.Minute), approval.NewQueue(time.Minute)
	a := startInbox(t, pool, "host-a/1111", qa)
	b := startInbox(t, pool, "host-b/2222", qb)
	console := startInbox(t, pool, "", nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := b.Subscribe(ctx)

	// Held on A, seen on B and the console with its holder.
	resA := hold(qa, "req-1")
	testutil.WaitFor(t, 10*time.Second, "B lists A's held request", func() bool { _, ok := pendingIn(b, "req-1"); return ok })
	r, _ := pendingIn(console, "req-1")
	if r.Origin != "host-a/1111" || r.Requester != "runner ci-1" {
		t.Fatalf("console sees %+v", r)
	}
	if got, ok := b.Get("req-1"); !ok || got.Origin != "host-a/1111" {
		t.Fatalf("B.Get: %+v %v", got, ok)
	}
	select {
	case ev := <-events:
		if ev.Type != approval.EventHeld || ev.Request.ID != "req-1" {
			t.Fatalf("B's first event: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("B's subscriber never heard of the held request")
	}

	// The requester cannot approve it through B: A's queue refuses.
	if _, err := b.Decide("req-1", approval.Approved, "ci-1", ""); !errors.Is(err, approval.ErrSelfApproval) {
		t.Fatalf("self-approval through B: %v", err)
	}
	// Approved through B: A's Hold returns the decision. The inboxes poll
	// once a minute and Decide waits 5 s, so it came by notification.
	d, err := b.Decide("req-1", approval.Approved, "alice", "ok")
	if err != nil || d.Decision != approval.Approved || d.By != "alice" {
		t.Fatalf("approve through B: %+v %v", d, err)
	}
	h := waitHeld(t, resA)
	if h.err != nil || h.d.Decision != approval.Approved || h.d.By != "alice" {
		t.Fatalf("A's held request ended with %+v %v", h.d, h.err)
	}
	// Twice: already decided, from PostgreSQL once A mirrored it.
	testutil.WaitFor(t, 10*time.Second, "the decision mirrored", func() bool { _, ok := pendingIn(b, "req-1"); return !ok })
	if d, err := b.Decide("req-1", approval.Denied, "bob", "no"); !errors.Is(err, approval.ErrAlreadyDecided) || d.Decision != approval.Approved {
		t.Fatalf("second decision: %+v %v", d, err)
	}
	if _, err := b.Decide("nope", approval.Approved, "bob", ""); !errors.Is(err, approval.ErrUnknownID) {
		t.Fatalf("unknown id: %v", err)
	}

	// Denied through the console.
	resA = hold(qa, "req-2")
	testutil.WaitFor(t, 10*time.Second, "the console lists req-2", func() bool { _, ok := pendingIn(console, "req-2"); return ok })
	if _, err := console.Decide("req-2", approval.Denied, "carol", ""); !errors.Is(err, approval.ErrReasonRequired) {
		t.Fatalf("denial without reason: %v", err)
	}
	if _, err := console.Decide("req-2", approval.Denied, "carol", "not today"); err != nil {
		t.Fatal(err)
	}
	if h := waitHeld(t, resA); h.d.Decision != approval.Denied || h.d.Reason != "not today" {
		t.Fatalf("A's held request ended with %+v", h.d)
	}

	// PostgreSQL down: A still decides its own request; B cannot.
	pg.Stop()
	resA = hold(qa, "req-3")
	testutil.WaitFor(t, 10*time.Second, "A lists req-3", func() bool { _, ok := pendingIn(a, "req-3"); return ok })
	if _, err := b.Decide("req-3", approval.Approved, "bob", ""); !errors.Is(err, approval.ErrUnavailable) {
		t.Fatalf("B deciding without PostgreSQL: %v", err)
	}
	if d, err := a.Decide("req-3", approval.Approved, "dave", ""); err != nil || d.Decision != approval.Approved {
		t.Fatalf("A deciding its own request without PostgreSQL: %+v %v", d, err)
	}
	if h := waitHeld(t, resA); h.d.Decision != approval.Approved {
		t.Fatalf("req-3 ended with %+v", h.d)
	}
	// Back up: A's mirror catches up, B sees nothing stale pending.
	resA = hold(qa, "req-4")
	pg.Start()
	testutil.WaitFor(t, 20*time.Second, "B lists req-4 after the restart", func() bool { _, ok := pendingIn(b, "req-4"); return ok })
	if _, ok := pendingIn(b, "req-3"); ok {
		t.Fatal("req-3, decided while PostgreSQL was down, is still pending in the shared inbox")
	}
	if _, err := b.Decide("req-4", approval.Approved, "erin", ""); err != nil {
		t.Fatal(err)
	}
	if h := waitHeld(t, resA); h.d.Decision != approval.Approved || h.d.By != "erin" {
		t.Fatalf("req-4 ended with %+v", h.d)
	}
}

// A holder that never answers: Decide gives up with ErrNoAnswer and the
// ask is withdrawn, so a late holder does not decide behind the
// approver's back.
func TestInboxHolderGone(t *testing.T) {
	_, pool := migratedPool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO sessctl_approvals (id, holder, request, created, expires)
VALUES ('gone-1', 'host-z/9', '{"id":"gone-1","requester":"runner x"}', now(), now() + interval '1 minute')`); err != nil {
		t.Fatal(err)
	}
	in, err := NewInbox(pool, InboxOptions{PollInterval: 100 * time.Millisecond, AnswerTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Decide("gone-1", approval.Approved, "alice", ""); !errors.Is(err, approval.ErrNoAnswer) {
		t.Fatalf("Decide with no holder: %v", err)
	}
	var code string
	if err := pool.QueryRow(ctx, `SELECT error_code FROM sessctl_approval_asks WHERE approval_id = 'gone-1'`).Scan(&code); err != nil || code != "withdrawn" {
		t.Fatalf("ask left as %q, %v", code, err)
	}
	// A holder that comes back does not act on the withdrawn ask.
	q := approval.NewQueue(time.Minute)
	res := make(chan held, 1)
	go func() {
		d, err := q.Hold(ctx, approval.Request{ID: "gone-1", Requester: "runner x"})
		res <- held{d, err}
	}()
	testutil.WaitFor(t, 5*time.Second, "held", func() bool { _, ok := q.Get("gone-1"); return ok })
	startInbox(t, pool, "host-z/9", q)
	time.Sleep(300 * time.Millisecond)
	if _, ok := q.Get("gone-1"); !ok {
		t.Fatal("a withdrawn ask decided the request")
	}
	q.Decide("gone-1", approval.Denied, "alice", "cleanup")
	<-res
}
