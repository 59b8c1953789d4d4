// Package testutil holds helpers shared by the tests of sessctl's packages.
// It is imported only from _test.go files.
package testutil

import (
	"testing"
	"time"
)

// DefaultWait is how long WaitFor waits when the test gives no deadline.
const DefaultWait = 10 * time.Second

// WaitFor polls cond every few milliseconds until it reports true, and
// fails the test (naming what) if it has not within timeout (DefaultWait
// when zero). It never polls without a deadline.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if timeout <= 0 {
		timeout = DefaultWait
	}
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
