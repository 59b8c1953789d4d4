package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// memLog is a copy of a log held in memory: a StoredLog for VerifyStored.
type memLog struct {
	origin, key string
	seqs        []uint64 // keys in order
	leaves      map[uint64][]byte
	hashes      map[uint64][]byte
	bodies      map[[2]uint64]*SealedBody
	cps         map[uint64][]byte
}

type memCursor struct {
	l *memLog
	i int
}

func (c *memCursor) First() ([]byte, []byte) { c.i = 0; return c.at() }
func (c *memCursor) Next() ([]byte, []byte)  { c.i++; return c.at() }
func (c *memCursor) at() ([]byte, []byte) {
	if c.i >= len(c.l.seqs) {
		return nil, nil
	}
	s := c.l.seqs[c.i]
	return u64key(s), c.l.leaves[s]
}

func (l *memLog) Origin() string     { return l.origin }
func (l *memLog) PublicKey() string  { return l.key }
func (l *memLog) Cursor() LeafCursor { return &memCursor{l: l} }
func (l *memLog) Body(seq uint64, resp bool) *SealedBody {
	k := [2]uint64{seq, 0}
	if resp {
		k[1] = 1
	}
	return l.bodies[k]
}
func (l *memLog) LeafHash(seq uint64) []byte              { return l.hashes[seq] }
func (l *memLog) Checkpoints() (map[uint64][]byte, error) { return l.cps, nil }
func (l *memLog) Err() error                              { return nil }
func (l *memLog) put(seq uint64, leaf []byte, hint tlog.Hash) {
	if !slices.Contains(l.seqs, seq) {
		l.seqs = append(l.seqs, seq)
		slices.Sort(l.seqs)
	}
	l.leaves[seq], l.hashes[seq] = leaf, hint[:]
}

// copyLog copies a store through Records and Checkpoints, as a shipper does.
func copyLog(t *testing.T, s *Store) *memLog {
	t.Helper()
	l := &memLog{origin: s.Origin(), key: s.PublicKey(), leaves: map[uint64][]byte{}, hashes: map[uint64][]byte{}, bodies: map[[2]uint64]*SealedBody{}, cps: map[uint64][]byte{}}
	if err := s.StoredRecords(0, func(r StoredRecord) error {
		l.put(r.Seq, r.Leaf, tlog.RecordHash(r.Leaf))
		if r.Request != nil {
			l.bodies[[2]uint64{r.Seq, 0}] = r.Request
		}
		if r.Response != nil {
			l.bodies[[2]uint64{r.Seq, 1}] = r.Response
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoints(0, func(size uint64, msg []byte) error { l.cps[size] = msg; return nil }); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRecordsSizeCheckpoints(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, CheckpointEvery: 5})
	ctx := context.Background()
	for i := range 12 {
		if _, err := s.Append(ctx, exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Size()
	if err != nil || n != 13 {
		t.Fatalf("Size = %d, %v; want 13", n, err)
	}
	var seqs []uint64
	if err := s.StoredRecords(3, func(r StoredRecord) error {
		seqs = append(seqs, r.Seq)
		if r.Seq == 3 {
			// The sealed body is what the commitment covers.
			rec, err := DecodeLeaf(r.Leaf)
			if err != nil || r.Request == nil || !checkBody(append(bytes.Clone(r.Request.Salt), r.Request.Body...), rec.Request) {
				t.Errorf("record 3: sealed request does not match its commitment (%v)", err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 10 || seqs[0] != 3 || seqs[9] != 12 {
		t.Fatalf("Records(3) gave %v", seqs)
	}
	var sizes []uint64
	if err := s.Checkpoints(1, func(size uint64, msg []byte) error {
		if _, err := OpenCheckpoint(msg, s.PublicKey()); err != nil {
			t.Errorf("checkpoint %d: %v", size, err)
		}
		sizes = append(sizes, size)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Genesis is checkpointed alone, then every 5 records.
	if !slices.Equal(sizes, []uint64{6, 11}) {
		t.Fatalf("Checkpoints(1) gave sizes %v, want [6 11]", sizes)
	}
}

func TestPruneBelow(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	ctx := context.Background()
	for i := range 10 {
		if _, err := s.Append(ctx, exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Everything is old enough, but records 4 and later are not shipped.
	res, err := s.PruneBelow(ctx, exchange(100).Start, 4)
	if err != nil || !res.Pruned || res.From != 1 || res.To != 3 {
		t.Fatalf("PruneBelow: %+v %v", res, err)
	}
	if _, req, _, _ := s.Get(exchange(3).SessionID); req == nil {
		t.Fatal("record 4 (exchange 3) lost its body before it was shipped")
	}
	if _, req, _, _ := s.Get(exchange(2).SessionID); req != nil {
		t.Fatal("record 3 kept its body")
	}
	// Nothing shipped beyond: nothing more to prune.
	if res, err := s.PruneBelow(ctx, exchange(100).Start, 4); err != nil || res.Pruned {
		t.Fatalf("second PruneBelow: %+v %v", res, err)
	}
}

// TestVerifyStored checks a copy of a log with the log verifier: clean, and
// with the tampering a database administrator could do.
func TestVerifyStored(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, CheckpointEvery: 4})
	ctx := context.Background()
	for i := range 10 {
		if _, err := s.Append(ctx, exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Prune(ctx, exchange(2).Start); err != nil { // bodies of 1, 2
		t.Fatal(err)
	}
	rep, err := VerifyStored(copyLog(t, s), VerifyOptions{PublicKey: s.PublicKey()})
	if err != nil || !rep.OK() || rep.Records != 12 || rep.Checkpoints != 3 || rep.PrunedBodies != 4 {
		t.Fatalf("clean copy: %+v %v", rep, err)
	}
	for _, tc := range []struct {
		name   string
		tamper func(l *memLog)
		want   string
	}{
		{"leaf changed", func(l *memLog) { l.leaves[5] = bytes.Replace(l.leaves[5], []byte("runner-"), []byte("runner+"), 1) }, "record 5: modified"},
		{"leaf changed with its hash", func(l *memLog) {
			l.leaves[5] = bytes.Replace(l.leaves[5], []byte("runner-"), []byte("runner+"), 1)
			h := tlog.RecordHash(l.leaves[5])
			l.hashes[5] = h[:]
			// With the hint rewritten too, the links cannot tell a changed
			// record 5 from a changed prev in record 6 (FORMAT.md §6).
		}, "record 6: modified"},
		{"row deleted", func(l *memLog) { l.seqs = slices.DeleteFunc(l.seqs, func(s uint64) bool { return s == 6 }) }, "record 6: missing"},
		{"rows swapped", func(l *memLog) { l.leaves[6], l.leaves[7] = l.leaves[7], l.leaves[6] }, "record 6: reordered"},
		{"last row changed", func(l *memLog) { l.leaves[11] = append(bytes.Clone(l.leaves[11][:len(l.leaves[11])-1]), ' ', '}') }, "record 11: modified"},
		{"body changed", func(l *memLog) {
			b := l.bodies[[2]uint64{8, 0}]
			l.bodies[[2]uint64{8, 0}] = &SealedBody{Salt: b.Salt, Body: append(bytes.Clone(b.Body), '!')}
		}, "record 8: body modified"},
		{"checkpoint changed", func(l *memLog) { l.cps[9] = l.cps[5] }, "record 8: checkpoint mismatch"},
		{"checkpoint forged", func(l *memLog) { l.cps[9] = bytes.Replace(l.cps[9], []byte("\n9\n"), []byte("\n10\n"), 1) }, "record 8: bad checkpoint signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := copyLog(t, s)
			tc.tamper(l)
			rep, err := VerifyStored(l, VerifyOptions{PublicKey: s.PublicKey()})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || rep.Problems[0].String() != tc.want {
				t.Fatalf("problems %v, want first %q", rep.Problems, tc.want)
			}
		})
	}
	// A copy that fails to read cannot be verified.
	l := copyLog(t, s)
	bad := &errLog{memLog: l}
	if _, err := VerifyStored(bad, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("VerifyStored with a read error: %v", err)
	}
}

type errLog struct{ *memLog }

func (errLog) Err() error { return errors.New("connection lost") }

// A copy of a record stored again under a new key is an insertion.
func TestVerifyStoredDuplicate(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, CheckpointEvery: 4})
	for i := range 6 {
		if _, err := s.Append(context.Background(), exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, at := range []uint64{7, 8} { // at the end, and beyond a gap
		l := copyLog(t, s)
		l.put(at, l.leaves[3], tlog.RecordHash(l.leaves[3]))
		rep, err := VerifyStored(l, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() || !slices.ContainsFunc(rep.Problems, func(p Problem) bool { return p.String() == fmt.Sprintf("record %d: inserted", at) }) {
			t.Fatalf("copy at %d: %v", at, rep.Problems)
		}
	}
}
