// Package diskspace watches the free space of the volume that holds the
// session log against a reserve: below it sessctl stops recording
// refusals one by one (they are only counted), so that what is left goes
// to the records of authenticated exchanges; near it, /healthz and the
// metrics warn before the gate closes.
package diskspace

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// WarnFactor: a volume with less than WarnFactor × the reserve free is
// reported as a warning.
const WarnFactor = 2

// Watch measures the free space of one volume.
type Watch struct {
	path    string
	reserve uint64

	free  atomic.Uint64
	total atomic.Uint64
	err   atomic.Pointer[error]
}

// New returns a Watch of the volume holding path with the given reserve in
// bytes, measured once.
func New(path string, reserve uint64) *Watch {
	w := &Watch{path: path, reserve: reserve}
	w.Measure()
	return w
}

// Measure reads the volume's free space now.
func (w *Watch) Measure() {
	free, total, err := space(w.path)
	if err != nil {
		err = fmt.Errorf("diskspace: %s: %w", w.path, err)
		w.err.Store(&err)
		return
	}
	w.err.Store(nil)
	w.free.Store(free)
	w.total.Store(total)
}

// Run measures every interval until ctx is done, logging when the volume
// crosses the warning level or the reserve, either way.
func (w *Watch) Run(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	state := w.state()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Measure()
		}
		now := w.state()
		if now == state {
			continue
		}
		state = now
		args := []any{"path", w.path, "free_mib", w.Free() >> 20, "reserve_mib", w.reserve >> 20}
		switch now {
		case 2:
			log.Error("session log volume below its free space reserve: refusals are only counted, exchanges still recorded", args...)
		case 1:
			log.Warn("session log volume near its free space reserve", args...)
		default:
			log.Info("session log volume has room again", args...)
		}
	}
}

// state is 0 (room), 1 (warn) or 2 (below the reserve).
func (w *Watch) state() int {
	switch {
	case w.Low():
		return 2
	case w.Warn():
		return 1
	}
	return 0
}

// Free returns the bytes available to sessctl on the volume at the last
// measure.
func (w *Watch) Free() uint64 { return w.free.Load() }

// Reserve returns the configured reserve.
func (w *Watch) Reserve() uint64 { return w.reserve }

// Low reports whether the free space is below the reserve.
func (w *Watch) Low() bool { return w.err.Load() == nil && w.free.Load() < w.reserve }

// Warn reports whether the free space is below WarnFactor × the reserve.
func (w *Watch) Warn() bool { return w.err.Load() == nil && w.free.Load() < WarnFactor*w.reserve }

// Warning is a low-space condition, worded in full (with the path) by
// Error and without it by Public.
type Warning struct {
	Path          string
	Free, Reserve uint64
	BelowReserve  bool
}

// Error names the volume and the figures.
func (w *Warning) Error() string {
	return fmt.Sprintf("%s: %s", w.Path, w.Public())
}

// Public words the warning without the path.
func (w *Warning) Public() string {
	if w.BelowReserve {
		return fmt.Sprintf("session log volume below its free space reserve (%d MiB free, reserve %d MiB): refusals are only counted", w.Free>>20, w.Reserve>>20)
	}
	return fmt.Sprintf("session log volume near its free space reserve (%d MiB free, reserve %d MiB)", w.Free>>20, w.Reserve>>20)
}

// Warnings returns the low-space warning, if any, and an error if the
// free space cannot be measured.
func (w *Watch) Warnings() []error {
	if p := w.err.Load(); p != nil {
		return []error{*p}
	}
	if !w.Warn() {
		return nil
	}
	return []error{&Warning{Path: w.path, Free: w.Free(), Reserve: w.reserve, BelowReserve: w.Low()}}
}
