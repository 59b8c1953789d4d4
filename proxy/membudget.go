package proxy

import (
	"errors"
	"io"
	"sync/atomic"
)

// memBudget bounds the bytes held across all exchanges at once (prompts
// being read, answers held whole or copied for their record):
// max_buffered_bytes. An exchange takes from it before it allocates and
// gives back when it ends, so that many runners, each within its own
// limits, cannot together take sessctl out of memory.
type memBudget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes; it reports false, reserving nothing, when that
// would exceed the budget.
func (b *memBudget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *memBudget) give(n int64) { b.used.Add(-n) }

// errOverBudget is returned when max_buffered_bytes is taken.
var errOverBudget = errors.New("proxy: max_buffered_bytes reached")

// holding is what one exchange holds of the budget.
type holding struct {
	b *memBudget
	n int64
}

// take reserves n more bytes for the exchange.
func (h *holding) take(n int64) bool {
	if !h.b.take(n) {
		return false
	}
	h.n += n
	return true
}

// release gives back everything the exchange holds.
func (h *holding) release() {
	h.b.give(h.n)
	h.n = 0
}

// firstChunk is the first buffer a body of unknown length is read into
// (and reserved); it doubles from there. A typical JSON answer (1-2 KB)
// fits; a 64 KiB first buffer cost more to allocate and clear than the
// rest of reading such an answer.
const firstChunk = 4 << 10

// readAll reads r (at most limit bytes; limit+1 tells the caller it is
// over) into a buffer reserved from
// h: sized exactly when the length is known (size >= 0), grown by at most
// doubling otherwise. It returns errOverBudget if the budget cannot cover
// the body, having read only part of it.
func (h *holding) readAll(r io.Reader, size, limit int64) ([]byte, error) {
	if size >= 0 && size <= limit {
		if !h.take(size) {
			return nil, errOverBudget
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		// The length was announced: more is an error the reader (a
		// MaxBytesReader or the HTTP framing) reports.
		var one [1]byte
		if n, err := r.Read(one[:]); n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
			if err == nil {
				err = errors.New("body longer than its Content-Length")
			}
			return nil, err
		}
		return buf, nil
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			grow := int64(max(firstChunk, cap(buf)))
			grow = min(grow, limit+1-int64(cap(buf)))
			if grow <= 0 {
				return buf, nil
			}
			if !h.take(grow) {
				return nil, errOverBudget
			}
			nb := make([]byte, len(buf), int64(cap(buf))+grow)
			copy(nb, buf)
			// The old buffer is garbage now; what the exchange holds is
			// the new capacity.
			h.b.give(int64(cap(buf)))
			h.n -= int64(cap(buf))
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
