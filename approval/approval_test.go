package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// holdAsync runs Hold in a goroutine and returns where its result lands.
type holdResult struct {
	d   Decision
	err error
}

func holdAsync(ctx context.Context, q *Queue, r Request) <-chan holdResult {
	out := make(chan holdResult, 1)
	go func() {
		d, err := q.Hold(ctx, r)
		out <- holdResult{d, err}
	}()
	return out
}

// waitHeld returns the next held event's request.
func waitHeld(t *testing.T, events <-chan Event) Request {
	t.Helper()
	for ev := range events {
		if ev.Type == EventHeld {
			return ev.Request
		}
	}
	t.Fatal("event channel closed")
	return Request{}
}

func req(requester string) Request {
	return Request{SessionID: "0193", Requester: "runner " + requester, RequesterName: requester,
		Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Rule: "prod", Prompt: "deploy it"}
}

func TestHoldApprove(t *testing.T) {
	q := NewQueue(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := q.Subscribe(ctx)
	res := holdAsync(context.Background(), q, req("ci-1"))

	held := waitHeld(t, events)
	if held.ID == "" || held.Requester != "runner ci-1" || held.Created.IsZero() || !held.Expires.Equal(held.Created.Add(time.Minute)) {
		t.Fatalf("held = %+v", held)
	}
	if p := q.Pending(); len(p) != 1 || p[0].ID != held.ID {
		t.Fatalf("Pending = %+v", p)
	}
	if got, ok := q.Get(held.ID); !ok || got.Prompt != "deploy it" {
		t.Fatalf("Get = %+v, %v", got, ok)
	}

	d, err := q.Decide(held.ID, Approved, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != Approved || d.By != "alice" || d.ID != held.ID || d.At.IsZero() {
		t.Fatalf("decision = %+v", d)
	}
	r := <-res
	if r.err != nil || r.d != d {
		t.Fatalf("Hold = %+v, %v; want %+v", r.d, r.err, d)
	}
	ev := <-events
	if ev.Type != EventDecided || ev.Decision == nil || *ev.Decision != d || ev.Request.ID != held.ID {
		t.Fatalf("event = %+v", ev)
	}
	if len(q.Pending()) != 0 {
		t.Fatal("still pending")
	}
	if _, ok := q.Get(held.ID); ok {
		t.Fatal("Get finds a decided request")
	}

	// Deciding again fails and says how it was decided.
	again, err := q.Decide(held.ID, Denied, "bob", "too late")
	if !errors.Is(err, ErrAlreadyDecided) || again.Decision != Approved {
		t.Fatalf("second Decide = %+v, %v", again, err)
	}
}

func TestDecideErrors(t *testing.T) {
	q := NewQueue(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := q.Subscribe(ctx)
	r := req("ci-1")
	r.Requester = "oidc repo:acme/api:environment:production (https://token.actions.githubusercontent.com)"
	r.RequesterName = "Octocat"
	res := holdAsync(context.Background(), q, r)
	id := waitHeld(t, events).ID

	tests := []struct {
		name, decision, by, reason string
		err                        error
	}{
		{"deny without reason", Denied, "alice", "  ", ErrReasonRequired},
		{"no approver", Approved, " ", "", ErrNoApprover},
		{"bad decision", "approve", "alice", "", ErrBadDecision},
		{"self by name", Approved, "octocat", "", ErrSelfApproval},
		{"self by identity", Approved, r.Requester, "", ErrSelfApproval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := q.Decide(id, tt.decision, tt.by, tt.reason); !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
	if _, err := q.Decide("nope", Approved, "alice", ""); !errors.Is(err, ErrUnknownID) {
		t.Fatalf("unknown id: err = %v", err)
	}
	if _, ok := q.Get(id); !ok {
		t.Fatal("refused decisions ended the request")
	}

	d, err := q.Decide(id, Denied, "alice", "not during the freeze")
	if err != nil {
		t.Fatal(err)
	}
	got := <-res
	if got.err != nil || got.d.Decision != Denied || got.d.Reason != "not during the freeze" || got.d != d {
		t.Fatalf("Hold = %+v, %v", got.d, got.err)
	}
}

func TestHoldTimeout(t *testing.T) {
	q := NewQueue(20 * time.Millisecond)
	d, err := q.Hold(context.Background(), req("ci-1"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != Timeout || d.By != "" || d.ID == "" {
		t.Fatalf("decision = %+v", d)
	}
	if _, err := q.Decide(d.ID, Approved, "alice", ""); !errors.Is(err, ErrAlreadyDecided) {
		t.Fatalf("Decide after timeout: err = %v", err)
	}
	if len(q.Pending()) != 0 {
		t.Fatal("timed-out request still pending")
	}
}

func TestHoldCanceled(t *testing.T) {
	q := NewQueue(time.Minute)
	sub, stop := context.WithCancel(context.Background())
	defer stop()
	events := q.Subscribe(sub)
	ctx, cancel := context.WithCancel(context.Background())
	res := holdAsync(ctx, q, req("ci-1"))
	id := waitHeld(t, events).ID
	cancel() // the runner went away
	r := <-res
	if !errors.Is(r.err, context.Canceled) || r.d.Decision != Canceled || r.d.ID != id {
		t.Fatalf("Hold = %+v, %v", r.d, r.err)
	}
	if ev := <-events; ev.Type != EventDecided || ev.Decision.Decision != Canceled {
		t.Fatalf("event = %+v", ev)
	}
	if _, err := q.Decide(id, Approved, "alice", ""); !errors.Is(err, ErrAlreadyDecided) {
		t.Fatalf("Decide after cancel: err = %v", err)
	}
}

func TestConcurrentHolds(t *testing.T) {
	q := NewQueue(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := q.Subscribe(ctx)
	const n = 20
	results := make([]<-chan holdResult, n)
	for i := range n {
		r := req(fmt.Sprintf("ci-%d", i))
		r.ID = fmt.Sprintf("req-%02d", i)
		results[i] = holdAsync(context.Background(), q, r)
	}
	for range n {
		waitHeld(t, events)
	}
	if len(q.Pending()) != n {
		t.Fatalf("pending = %d", len(q.Pending()))
	}
	// Decide them in reverse order, alternately approving and denying;
	// each holder gets its own decision, whatever the others do.
	for i := n - 1; i >= 0; i-- {
		id := fmt.Sprintf("req-%02d", i)
		var err error
		if i%2 == 0 {
			_, err = q.Decide(id, Approved, "alice", "")
		} else {
			_, err = q.Decide(id, Denied, "alice", "no "+id)
		}
		if err != nil {
			t.Fatal(err)
		}
		r := <-results[i]
		want := Approved
		if i%2 == 1 {
			want = Denied
		}
		if r.err != nil || r.d.ID != id || r.d.Decision != want {
			t.Fatalf("holder %d got %+v, %v", i, r.d, r.err)
		}
		if len(q.Pending()) != i {
			t.Fatalf("after deciding %s: %d pending", id, len(q.Pending()))
		}
	}
}

func TestDecideRacesTimeout(t *testing.T) {
	// Whatever wins, Hold returns exactly the decision that was made.
	for range 50 {
		q := NewQueue(time.Millisecond)
		id := NewID()
		r := req("ci-1")
		r.ID = id
		res := holdAsync(context.Background(), q, r)
		d, err := q.Decide(id, Approved, "alice", "")
		got := <-res
		switch {
		case err == nil:
			if got.d != d {
				t.Fatalf("Decide won with %+v, Hold returned %+v", d, got.d)
			}
		case errors.Is(err, ErrAlreadyDecided):
			if got.d.Decision != Timeout {
				t.Fatalf("timeout won, Hold returned %+v", got.d)
			}
		case errors.Is(err, ErrUnknownID):
			// Decide ran before Hold queued the request.
			if got.d.Decision != Timeout {
				t.Fatalf("Hold returned %+v", got.d)
			}
		default:
			t.Fatal(err)
		}
	}
}

func TestHoldRequestLimits(t *testing.T) {
	q := NewQueue(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := q.Subscribe(ctx)
	r := req("ci-1")
	r.ID = "fixed"
	r.Prompt = strings.Repeat("é", PreviewLimit) // 2 bytes a rune
	go q.Hold(ctx, r)
	held := waitHeld(t, events)
	if len(held.Prompt) > PreviewLimit || !strings.HasPrefix(r.Prompt, held.Prompt) || len(held.Prompt) < PreviewLimit-1 {
		t.Fatalf("preview is %d bytes", len(held.Prompt))
	}
	if _, err := q.Hold(ctx, r); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("duplicate id: err = %v", err)
	}
}

func TestQueueFull(t *testing.T) {
	q := NewQueue(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range MaxPending {
		r := req("ci")
		r.ID = fmt.Sprint(i)
		if _, ok := q.Ticket(r, fmt.Sprint(i)); ok {
			t.Fatal("ticket approved")
		}
	}
	if _, err := q.Hold(ctx, req("ci")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err = %v, want %v", err, ErrQueueFull)
	}
	if d, _ := q.Ticket(req("ci"), "more"); d.ID != "" {
		t.Fatalf("ticket %+v queued in a full queue", d)
	}
}

func TestSubscribe(t *testing.T) {
	q := NewQueue(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	events := q.Subscribe(ctx)
	slowCtx, slowCancel := context.WithCancel(context.Background())
	defer slowCancel()
	slow := q.Subscribe(slowCtx)

	for i := range subscriberBuffer + 1 {
		if d, _ := q.Ticket(req("ci"), fmt.Sprint(i)); d.ID == "" {
			t.Fatal("not queued")
		}
		<-events // keep up
	}
	// The subscriber that never read was dropped: it gets what it had
	// buffered, then the channel closes.
	n := 0
	for range slow {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("slow subscriber got %d events before closing, want %d", n, subscriberBuffer)
	}
	cancel()
	for range events {
	}
}

func TestNewQueueDefaults(t *testing.T) {
	if NewQueue(0).Timeout() != DefaultTimeout {
		t.Fatal("default timeout")
	}
	a, b := NewID(), NewID()
	if a == b || len(a) != 16 || strings.ToLower(a) != a {
		t.Fatalf("ids %q %q", a, b)
	}
}
