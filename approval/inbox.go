package approval

import "context"

// Inbox is what approvers act through: the admin API, the web UI and the
// CLI list, read and decide held requests with it. A [*Queue] is the inbox
// of one process; a fleet's shared inbox (package central) lists the
// requests held on every replica and forwards each decision to the queue
// of the replica holding the request, which alone decides: it checks the
// approver, refuses self-approval, and wakes the held request.
type Inbox interface {
	// Pending returns the requests waiting for a decision, oldest first.
	Pending() []Request
	// Get returns the pending request id.
	Get(id string) (Request, bool)
	// Decide approves or denies the pending request id on behalf of
	// approver by, with the errors of [Queue.Decide].
	Decide(id, decision, by, reason string) (Decision, error)
	// Subscribe returns a channel of events until ctx is done.
	Subscribe(ctx context.Context) <-chan Event
}

var _ Inbox = (*Queue)(nil)

// Decided returns the decision on request id if it was decided recently
// (the last 4096 decisions are remembered), for a caller that must learn
// how a request it saw pending ended.
func (q *Queue) Decided(id string) (Decision, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d, ok := q.recent[id]
	return d, ok
}
