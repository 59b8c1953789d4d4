package store

import (
	"bytes"
	"strconv"
)

// fastHeader reads seq, prev, kind and the body commitments from a leaf
// laid out as EncodeLeaf writes it, without a general JSON decoder. It
// returns ok=false for anything unusual (and for genesis and prune
// records, whose extra fields Verify needs); the caller then falls back to
// decodeLeafHeader. See FORMAT.md for why the patterns below cannot occur
// elsewhere in an encoded leaf.
func fastHeader(leaf []byte) (h leafHeader, ok bool) {
	b, ok := bytes.CutPrefix(leaf, []byte(LeafPrefix+`{"seq":`))
	if !ok {
		return h, false
	}
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == 0 || i > 20 || (b[0] == '0' && i > 1) {
		return h, false
	}
	seq, err := strconv.ParseUint(string(b[:i]), 10, 64)
	if err != nil {
		return h, false
	}
	b, ok = bytes.CutPrefix(b[i:], []byte(`,"prev":"`))
	if !ok || len(b) < 64 {
		return h, false
	}
	prev := b[:64]
	if !isLowerHex(prev) {
		return h, false
	}
	b, ok = bytes.CutPrefix(b[64:], []byte(`","kind":"`))
	if !ok {
		return h, false
	}
	end := bytes.IndexByte(b, '"')
	if end <= 0 || bytes.IndexByte(b[:end], '\\') >= 0 {
		return h, false
	}
	kind := Kind(b[:end])
	if kind == KindGenesis || kind == KindPrune || !bytes.HasSuffix(b, []byte("}")) {
		return h, false
	}
	h.Seq, h.Prev, h.Kind = seq, string(prev), kind
	if h.Request, ok = fastCommitment(b, `,"request":{"sha256":"`); !ok {
		return h, false
	}
	if h.Response, ok = fastCommitment(b, `,"response":{"sha256":"`); !ok {
		return h, false
	}
	return h, true
}

// fastCommitment finds key (which occurs at most once in an encoded leaf)
// and parses the commitment after it: 64 hex digits, `","size":`, digits, `}`.
func fastCommitment(b []byte, key string) (*Commitment, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, true
	}
	b = b[i+len(key):]
	if len(b) < 64 || !isLowerHex(b[:64]) {
		return nil, false
	}
	c := &Commitment{Hash: string(b[:64])}
	b, ok := bytes.CutPrefix(b[64:], []byte(`","size":`))
	if !ok {
		return nil, false
	}
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == 0 || j > 19 || j >= len(b) || b[j] != '}' || (b[0] == '0' && j > 1) {
		return nil, false
	}
	n, err := strconv.ParseInt(string(b[:j]), 10, 64)
	if err != nil {
		return nil, false
	}
	c.Size = n
	return c, true
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// readHeader is fastHeader with the JSON decoder as fallback.
func readHeader(leaf []byte) (*leafHeader, error) {
	if h, ok := fastHeader(leaf); ok {
		return &h, nil
	}
	return decodeLeafHeader(leaf)
}
