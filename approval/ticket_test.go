package approval

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestTicketApproved(t *testing.T) {
	q := NewQueue(time.Minute)
	r := req("ci-1")
	d, ok := q.Ticket(r, "body-1")
	if ok || d.Decision != Pending || d.ID == "" {
		t.Fatalf("first Ticket = %+v, %v", d, ok)
	}
	id := d.ID
	if p := q.Pending(); len(p) != 1 || p[0].ID != id || p[0].Requester != r.Requester {
		t.Fatalf("Pending = %+v", p)
	}
	// Sent again while pending: same ticket.
	if again, ok := q.Ticket(r, "body-1"); ok || again.ID != id || again.Decision != Pending {
		t.Fatalf("while pending: %+v, %v", again, ok)
	}
	// Another body, requester or path is another request.
	other := r
	other.Path = "/v1/responses"
	otherRequester := r
	otherRequester.Requester = "runner ci-2"
	for _, x := range []struct {
		r    Request
		body string
	}{{r, "body-2"}, {other, "body-1"}, {otherRequester, "body-1"}} {
		if d, _ := q.Ticket(x.r, x.body); d.ID == id || d.ID == "" {
			t.Fatalf("different request shares ticket %s", id)
		}
	}

	if _, err := q.Decide(id, Approved, "ci-1", ""); !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("self-approval: err = %v", err)
	}
	if _, err := q.Decide(id, Approved, "alice", "ok"); err != nil {
		t.Fatal(err)
	}
	d, ok = q.Ticket(r, "body-1")
	if !ok || d.Decision != Approved || d.ID != id || d.By != "alice" {
		t.Fatalf("after approval: %+v, %v", d, ok)
	}
	// The approval is used up.
	d, ok = q.Ticket(r, "body-1")
	if ok || d.Decision != Pending || d.ID == id {
		t.Fatalf("approval reused: %+v, %v", d, ok)
	}
}

func TestTicketDenied(t *testing.T) {
	q := NewQueue(time.Minute)
	r := req("ci-1")
	d, _ := q.Ticket(r, "h")
	if _, err := q.Decide(d.ID, Denied, "alice", "no"); err != nil {
		t.Fatal(err)
	}
	got, ok := q.Ticket(r, "h")
	if ok || got.Decision != Denied || got.Reason != "no" || got.ID != d.ID {
		t.Fatalf("after denial: %+v, %v", got, ok)
	}
	// Reported once; the next identical request asks again.
	if next, ok := q.Ticket(r, "h"); ok || next.Decision != Pending || next.ID == d.ID {
		t.Fatalf("next: %+v, %v", next, ok)
	}
}

func TestTicketTimeout(t *testing.T) {
	q := NewQueue(10 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := q.Subscribe(ctx)
	r := req("ci-1")
	d, _ := q.Ticket(r, "h")
	for ev := range events {
		if ev.Type == EventDecided {
			if ev.Decision.Decision != Timeout || ev.Decision.ID != d.ID {
				t.Fatalf("event %+v", ev)
			}
			break
		}
	}
	if len(q.Pending()) != 0 {
		t.Fatal("timed-out ticket still pending")
	}
	got, ok := q.Ticket(r, "h")
	if ok || got.Decision != Timeout || got.ID != d.ID {
		t.Fatalf("after timeout: %+v, %v", got, ok)
	}
	if _, err := q.Decide(d.ID, Approved, "alice", ""); !errors.Is(err, ErrAlreadyDecided) {
		t.Fatalf("Decide after timeout: err = %v", err)
	}
}

func TestTicketExpiry(t *testing.T) {
	q := NewQueue(time.Minute)
	var mu sync.Mutex
	now := time.Now()
	q.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r := req("ci-1")
	d, _ := q.Ticket(r, "h")
	if _, err := q.Decide(d.ID, Approved, "alice", ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(TicketTTL + time.Second)
	mu.Unlock()
	if got, ok := q.Ticket(r, "h"); ok || got.Decision != Pending || got.ID == d.ID {
		t.Fatalf("expired approval redeemed: %+v, %v", got, ok)
	}
}

func TestTicketConcurrent(t *testing.T) {
	q := NewQueue(time.Minute)
	r := req("ci-1")
	ids := make(chan string, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			d, _ := q.Ticket(r, "same")
			ids <- d.ID
		})
	}
	wg.Wait()
	close(ids)
	first := ""
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first || id == "" {
			t.Fatalf("identical requests got tickets %q and %q", first, id)
		}
	}
	if len(q.Pending()) != 1 {
		t.Fatalf("%d pending", len(q.Pending()))
	}
}
