package store

import (
	"slices"

	"golang.org/x/mod/sumdb/tlog"
)

// compactRange computes RFC 6962 tree roots in O(log n) memory: the roots
// of the perfect subtrees that make up the leaves so far, largest first.
// Both verifiers (of the log file and of an export) build their tree with
// it.
type compactRange struct {
	hashes []tlog.Hash
	sizes  []int64
}

// add appends one leaf hash.
func (t *compactRange) add(h tlog.Hash) {
	t.hashes, t.sizes = append(t.hashes, h), append(t.sizes, 1)
	for n := len(t.sizes); n >= 2 && t.sizes[n-1] == t.sizes[n-2]; n = len(t.sizes) {
		t.hashes[n-2] = tlog.NodeHash(t.hashes[n-2], t.hashes[n-1])
		t.sizes[n-2] *= 2
		t.hashes, t.sizes = t.hashes[:n-1], t.sizes[:n-1]
	}
}

// root is the tree hash of the leaves added so far; the zero hash when
// there are none.
func (t *compactRange) root() tlog.Hash {
	if len(t.hashes) == 0 {
		return tlog.Hash{}
	}
	h := t.hashes[len(t.hashes)-1]
	for i := len(t.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(t.hashes[i], h)
	}
	return h
}

// treeRoots is a compact range that also keeps the tree's root at each of
// a set of sizes (the checkpoints' sizes) as leaves are added.
type treeRoots struct {
	compactRange
	n     int64               // leaves added
	sizes []int64             // sizes still to reach, ascending
	roots map[int64]tlog.Hash // root at each size reached
}

// want adds sizes at which to keep the root.
func (t *treeRoots) want(sizes []int64) {
	t.sizes = append(t.sizes, sizes...)
	slices.Sort(t.sizes)
	t.sizes = slices.Compact(t.sizes)
	if t.roots == nil {
		t.roots = map[int64]tlog.Hash{}
	}
}

// add appends one leaf hash and records the root if a wanted size is
// reached.
func (t *treeRoots) add(h tlog.Hash) {
	t.compactRange.add(h)
	t.n++
	for len(t.sizes) > 0 && t.sizes[0] <= t.n {
		if t.sizes[0] == t.n {
			t.roots[t.n] = t.compactRange.root()
		}
		t.sizes = t.sizes[1:]
	}
}

// signedCheckpoint is a checkpoint with the signed note it was read from
// (not yet checked).
type signedCheckpoint struct {
	c   Checkpoint
	msg []byte
}

// checkpointsOf reads the checkpoints of the log origin among signed
// notes, without checking their signatures; the others are ignored.
func checkpointsOf(msgs [][]byte, origin string) []signedCheckpoint {
	var out []signedCheckpoint
	for _, msg := range msgs {
		c, err := ParseCheckpoint(noteText(msg))
		if err != nil || c.Origin != origin {
			continue
		}
		out = append(out, signedCheckpoint{c, msg})
	}
	return out
}

// checkRoot reports whether checkpoint c's root is the recomputed root at
// its size. A checkpoint over the first broken record (firstBad, -1 if
// none) passes: its mismatch follows from the break already reported.
func checkRoot(c Checkpoint, t *treeRoots, firstBad int64) bool {
	return t.roots[c.Size] == c.Root || (firstBad >= 0 && firstBad < c.Size)
}
