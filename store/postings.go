package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// List answers a filter by intersecting posting lists: for each filter
// field that is set, the records listed under its value in the index (or
// the records of a session), each sorted in list order. All lists share
// that order (start time, then seq), so a zigzag join walks them newest
// first, seeking each to the candidate the others propose, and reads only
// the records every list holds. Without a usable filter, the time index is
// the one list.

// pos is a record's place in list order: its start time (timeBits), then
// its sequence number.
type pos struct{ t, seq uint64 }

func (a pos) less(b pos) bool { return a.t < b.t || a.t == b.t && a.seq < b.seq }

func comparePos(a, b pos) int {
	switch {
	case a.less(b):
		return -1
	case b.less(a):
		return 1
	}
	return 0
}

// below returns the greatest position smaller than a.
func (a pos) below() (pos, bool) {
	switch {
	case a.seq > 0:
		return pos{a.t, a.seq - 1}, true
	case a.t > 0:
		return pos{a.t - 1, math.MaxUint64}, true
	}
	return pos{}, false
}

func decodePos(b []byte) pos {
	return pos{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16])}
}

func (a pos) key(prefix []byte) []byte {
	b := make([]byte, 0, len(prefix)+16)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, a.t)
	return binary.BigEndian.AppendUint64(b, a.seq)
}

// postings is a list of positions walked downwards.
type postings interface {
	// seekLE returns the greatest position in the list that is ≤ p, or
	// false if there is none. Successive calls pass non-increasing p.
	seekLE(p pos) (pos, bool)
}

// maxSteps is how many entries a cursor steps back before it seeks instead.
const maxSteps = 16

// cursorPostings lists the keys prefix ‖ BE64(t) ‖ BE64(seq) of a bucket.
// Keys that start with prefix but are longer belong to another value
// (one that extends this value with 0x00 and more) and are skipped.
type cursorPostings struct {
	c      *bbolt.Cursor
	prefix []byte
	cur    pos
	state  int // 0: not positioned; 1: at cur; 2: exhausted
}

const (
	unpositioned = iota
	positioned
	exhausted
)

func newCursorPostings(b *bbolt.Bucket, prefix []byte) *cursorPostings {
	return &cursorPostings{c: b.Cursor(), prefix: prefix}
}

func (p *cursorPostings) seekLE(target pos) (pos, bool) {
	switch p.state {
	case exhausted:
		return pos{}, false
	case positioned:
		// Targets decrease: step back from where the cursor is while the
		// answer is near, seek when it is not.
		for i := 0; ; i++ {
			if !target.less(p.cur) {
				return p.cur, true
			}
			if i == maxSteps {
				break
			}
			k, _ := p.c.Prev()
			if !p.settle(k) {
				return pos{}, false
			}
		}
	}
	want := target.key(p.prefix)
	k, _ := p.c.Seek(want)
	switch {
	case k == nil:
		k, _ = p.c.Last()
	case !bytes.Equal(k, want):
		k, _ = p.c.Prev()
	}
	if !p.settle(k) {
		return pos{}, false
	}
	return p.cur, true
}

// settle moves back from key k (which is below the previous position) to
// the first key of this list, and reports whether there is one. Every key
// below k that lacks the prefix sorts before all keys that have it.
func (p *cursorPostings) settle(k []byte) bool {
	for ; k != nil && bytes.HasPrefix(k, p.prefix); k, _ = p.c.Prev() {
		if len(k) == len(p.prefix)+16 {
			p.cur, p.state = decodePos(k[len(p.prefix):]), positioned
			return true
		}
	}
	p.state = exhausted
	return false
}

// slicePostings is a list held in memory, sorted ascending.
type slicePostings struct {
	ps []pos
	n  int // entries not yet passed: ps[:n]
}

func newSlicePostings(ps []pos) *slicePostings {
	slices.SortFunc(ps, comparePos)
	ps = slices.Compact(ps)
	return &slicePostings{ps: ps, n: len(ps)}
}

func (s *slicePostings) seekLE(target pos) (pos, bool) {
	for s.n > 0 && target.less(s.ps[s.n-1]) {
		s.n--
	}
	if s.n == 0 {
		return pos{}, false
	}
	return s.ps[s.n-1], true
}

// intersect calls emit with each position that every list holds, from
// upper (inclusive) down to the first below since, until emit returns
// false or an error.
func intersect(lists []postings, upper pos, since uint64, emit func(pos) (bool, error)) error {
	target := upper
	for {
		cand, ok := lists[0].seekLE(target)
		if !ok || cand.t < since {
			return nil
		}
		for agreed, i := 1, 1%len(lists); agreed < len(lists); i = (i + 1) % len(lists) {
			p, ok := lists[i].seekLE(cand)
			if !ok || p.t < since {
				return nil
			}
			if p == cand {
				agreed++
			} else {
				cand, agreed = p, 1
			}
		}
		if more, err := emit(cand); err != nil || !more {
			return err
		}
		if target, ok = cand.below(); !ok {
			return nil
		}
	}
}

// queryLists returns a posting list for each filter field that has one,
// and the first sequence number the lists do not cover: math.MaxUint64 if
// they cover every record, else meta/indexed (the records from there on
// are not in the index yet, and List scans them). With no lists, List
// walks the time index.
func queryLists(tx *bbolt.Tx, f *Filter) ([]postings, uint64) {
	var lists []postings
	if f.Session != "" {
		// The session index is written with each record.
		lists = append(lists, sessionPostings(tx, f.Session))
	}
	covered := uint64(math.MaxUint64)
	ix, indexed := usableIndex(tx)
	if ix == nil {
		return lists, covered
	}
	for _, x := range []term{
		{fieldRun, f.Run}, {fieldRepo, f.Repo}, {fieldActor, f.Actor}, {fieldRule, f.Rule},
		{fieldRunner, f.Runner}, {fieldOutcome, string(f.Outcome)}, {fieldHost, f.Host}, {fieldKind, string(f.Kind)},
	} {
		if x.value != "" && !unindexed[x] {
			lists = append(lists, newCursorPostings(ix, indexPrefix(x.field, x.value)))
			covered = indexed
		}
	}
	if f.SHA != "" {
		lists = append(lists, shaPostings(ix, f.SHA))
		covered = indexed
	}
	return lists, covered
}

// shaPostings lists the records whose sha claim matches want as shaMatch
// defines it. An abbreviation can match several commits, whose entries
// lie apart in the index: they are gathered and sorted in memory.
func shaPostings(ix *bbolt.Bucket, want string) postings {
	if len(want) < minSHAAbbrev {
		return newCursorPostings(ix, indexPrefix(fieldSHA, want))
	}
	var ps []pos
	collect := func(prefix []byte, ok func(value []byte) bool) {
		c := ix.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			// field ‖ 0 ‖ value ‖ 0 ‖ 16 bytes
			n := len(k) - 17
			if n < len(fieldSHA)+1 || k[n] != 0 || !ok(k[len(fieldSHA)+1:n]) {
				continue
			}
			ps = append(ps, decodePos(k[n+1:]))
		}
	}
	if len(want) <= maxIndexValue {
		collect(append([]byte(fieldSHA+"\x00"), want...), func(v []byte) bool { return shaMatch(string(v), want) })
	}
	// Values too long to be indexed as they are: let the filter decide.
	collect([]byte(fieldSHA+"\x00\xff"), func([]byte) bool { return true })
	return newSlicePostings(ps)
}

// sessionPostings lists the records of a session, from the sessions index.
func sessionPostings(tx *bbolt.Tx, id string) postings {
	prefix := append([]byte(id), 0)
	leaves := tx.Bucket(bucketLeaves)
	var ps []pos
	c := tx.Bucket(bucketSessions).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+8 {
			continue
		}
		seq := binary.BigEndian.Uint64(k[len(prefix):])
		var v struct {
			Start time.Time `json:"start"`
		}
		body, err := leafBody(leaves.Get(u64key(seq)))
		if err != nil || json.Unmarshal(body, &v) != nil {
			continue
		}
		ps = append(ps, pos{timeBits(v.Start), seq})
	}
	return newSlicePostings(ps)
}
