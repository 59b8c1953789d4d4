package approval

import "time"

// Ticket is the non-blocking mode (approval_mode: ticket). The first call
// for a request queues it and returns a Pending decision carrying the
// approval id, for the caller to refuse at once and tell the client. A
// request is the same when it has the same Requester, Method, Host, Path
// and bodyHash. Calls while it waits return Pending again. Once decided:
//
//   - approved: the next call returns the decision and true, once; the
//     approval is used up, a further identical request starts over;
//   - denied or timed out: the next call returns that decision and false,
//     once; a further identical request starts over.
//
// Decided tickets are forgotten after TicketTTL. When the queue is full,
// Ticket returns a Decision with no ID and Decision Pending but queues
// nothing; callers may treat an empty ID as ErrQueueFull.
func (q *Queue) Ticket(r Request, bodyHash string) (Decision, bool) {
	key := ticketKey(r, bodyHash)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sweepTickets()
	if t := q.tickets[key]; t != nil {
		switch t.decision.Decision {
		case Pending:
			return Decision{ID: t.id, Decision: Pending}, false
		case Approved:
			delete(q.tickets, key)
			return t.decision, true
		default:
			delete(q.tickets, key)
			return t.decision, false
		}
	}
	r.ID = NewID()
	e, err := q.addLocked(r, key)
	if err != nil {
		return Decision{Decision: Pending}, false
	}
	id := e.req.ID
	q.tickets[key] = &ticket{id: id, decision: Decision{ID: id, Decision: Pending}}
	e.timer = time.AfterFunc(q.timeout, func() {
		q.finish(id, Decision{ID: id, Decision: Timeout, At: q.now()})
	})
	return Decision{ID: id, Decision: Pending}, false
}

// ticketKey identifies "the same request" for tickets.
func ticketKey(r Request, bodyHash string) string {
	return r.Requester + "\x00" + r.Method + "\x00" + r.Host + "\x00" + r.Path + "\x00" + bodyHash
}

// sweepTickets forgets decided tickets past their expiry. q.mu is held.
func (q *Queue) sweepTickets() {
	now := q.now()
	for k, t := range q.tickets {
		if t.decision.Decision != Pending && now.After(t.expires) {
			delete(q.tickets, k)
		}
	}
}
