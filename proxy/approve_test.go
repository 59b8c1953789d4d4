package proxy

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// waitPending returns the first pending approval, waiting for it.
func waitPending(t *testing.T, q *approval.Queue, n int) []approval.Request {
	t.Helper()
	var p []approval.Request
	testutil.WaitFor(t, 0, fmt.Sprintf("%d pending approvals", n), func() bool { p = q.Pending(); return len(p) >= n })
	return p
}

func TestApprovalHold(t *testing.T) {
	q := approval.NewQueue(time.Minute)
	e := newEnv(t, okJSON, func(o *Options) {
		o.Approvals = q
		o.Policies = []identity.Policy{{Name: "needs-human", Match: map[string]string{"runner": "ci-1"}, Approve: "always"}}
	})
	type result struct {
		status int
		body   []byte
	}
	// Two held requests at once, and other traffic meanwhile.
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
			results[i] = result{resp.StatusCode, body}
		}()
	}
	pending := waitPending(t, q, 2)
	if n := len(e.upstreamRequests()); n != 0 {
		t.Fatalf("a held request reached the upstream before approval")
	}
	if _, err := q.Decide(pending[0].ID, approval.Approved, "ci-1", ""); err == nil {
		t.Fatal("the requesting runner approved its own request")
	}
	if _, err := q.Decide(pending[0].ID, approval.Approved, "alice", "looks fine"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Decide(pending[1].ID, approval.Denied, "bob", "not today"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	var ok, denied int
	for _, r := range results {
		switch {
		case r.status == 200:
			ok++
		case r.status == 403 && apiErr(t, r.body).Type == errApprovalDenied:
			denied++
		default:
			t.Errorf("unexpected answer %d %s", r.status, r.body)
		}
	}
	if ok != 1 || denied != 1 {
		t.Fatalf("%d approved, %d denied; want 1 and 1", ok, denied)
	}
	var decisions []string
	for _, r := range e.records() {
		if r.Kind == store.KindApproval && r.Approval != nil && r.Approval.Decision != approval.Pending {
			decisions = append(decisions, r.Approval.Decision+" by "+r.Approval.By)
		}
	}
	if len(decisions) != 2 {
		t.Errorf("decision records: %v", decisions)
	}
}

func TestApprovalTimeout(t *testing.T) {
	q := approval.NewQueue(300 * time.Millisecond)
	e := newEnv(t, okJSON, func(o *Options) {
		o.Approvals = q
		o.Policies = []identity.Policy{{Name: "needs-human", Match: map[string]string{"runner": "*"}, Approve: "always"}}
	})
	resp, body := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	if resp.StatusCode != http.StatusForbidden || apiErr(t, body).Type != errApprovalTimeout {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	recs := e.records()
	if last := recs[len(recs)-1]; last.Outcome != store.OutcomeApprovalTimeout {
		t.Errorf("outcome %q", last.Outcome)
	}
}

func TestPolicyDenyAndMetadataRecording(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) {
		o.Policies = []identity.Policy{{Name: "quiet", Match: map[string]string{"runner": "ci-1"}, Record: "metadata"}}
	})
	resp, _ := post(t, e.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	recs := e.records()
	last := recs[len(recs)-1]
	if last.Recording != "metadata" || last.Identity.Policy != "quiet" || last.Request != nil {
		t.Fatalf("metadata record: %+v", last)
	}
	_, req, ans, err := e.store.Get(last.SessionID)
	if err != nil || req != nil || ans != nil {
		t.Fatalf("bodies kept under record: metadata: %q %q %v", req, ans, err)
	}

	e2 := newEnv(t, okJSON, func(o *Options) {
		o.Policies = []identity.Policy{{Name: "nobody", Match: map[string]string{"runner": "*"}, Deny: true}}
	})
	resp, body := post(t, e2.client, "https://api.openai.com/v1/chat/completions", testRunnerToken, chatBody)
	if resp.StatusCode != http.StatusForbidden || apiErr(t, body).Type != errForbidden {
		t.Fatalf("deny policy: %d %s", resp.StatusCode, body)
	}
}
