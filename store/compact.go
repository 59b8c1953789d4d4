package store

import "golang.org/x/mod/sumdb/tlog"

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
