package testutil

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(20 * time.Millisecond)
		n.Store(1)
	}()
	WaitFor(t, time.Second, "n to become 1", func() bool { return n.Load() == 1 })
	if n.Load() != 1 {
		t.Fatalf("WaitFor returned before the condition held")
	}
}

// fakeTB records a Fatalf instead of stopping the goroutine, so the
// deadline path can be checked.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func TestWaitForDeadline(t *testing.T) {
	f := &fakeTB{}
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("expected the fake Fatalf to stop WaitFor, got %v", r)
			}
		}()
		WaitFor(f, 30*time.Millisecond, "never", func() bool { return false })
	}()
	if f.failed == "" {
		t.Fatal("WaitFor did not fail past its deadline")
	}
}
