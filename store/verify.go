package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Problem kinds reported by Verify.
const (
	ProblemModified           = "modified"
	ProblemMissing            = "missing"
	ProblemInserted           = "inserted"
	ProblemReordered          = "reordered"
	ProblemBodyModified       = "body modified"
	ProblemBodyMissing        = "body missing"
	ProblemBadSignature       = "bad checkpoint signature"
	ProblemCheckpointMismatch = "checkpoint mismatch"
	ProblemTruncated          = "truncated" // reported as "truncated (checkpoint says N, log has M)"
	ProblemForked             = "forked"
)

// Problem is one integrity failure found by Verify.
type Problem struct {
	Seq  uint64 `json:"seq"`
	Kind string `json:"kind"` // one of the Problem* constants; truncated carries its counts
	// Detail says what was compared, for humans.
	Detail string `json:"detail,omitempty"`
}

// String formats p as "record <seq>: <kind>".
func (p Problem) String() string { return fmt.Sprintf("record %d: %s", p.Seq, p.Kind) }

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// PublicKey pins the checkpoint signer (a note verifier key). If it
	// is not the key the log's genesis record names, Verify fails with
	// ErrWrongKey. Empty: trust the key in the genesis record.
	PublicKey string
	// Checkpoints are signed checkpoints kept outside the log (e.g. the
	// notes of a checkpoint file, see SplitNotes). Those for other
	// origins are ignored.
	Checkpoints [][]byte
}

// ErrWrongKey is returned by Verify when a pinned public key is not the
// log's key.
var ErrWrongKey = errors.New("store: verify: the log is signed by a different key than the pinned one")

// Report is the result of Verify.
type Report struct {
	Path      string `json:"path,omitempty"`
	Origin    string `json:"origin"`
	PublicKey string `json:"public_key"`
	KeyPinned bool   `json:"key_pinned"`
	Records   int64  `json:"records"`
	// Checkpoints counts the checkpoints checked (stored and external).
	Checkpoints  int       `json:"checkpoints"`
	External     int       `json:"external_checkpoints"`
	Head         string    `json:"head"` // hex leaf hash of the last record
	Root         string    `json:"root"` // base64 tree hash over all records
	Bodies       int64     `json:"bodies"`
	BodyBytes    int64     `json:"body_bytes"`
	PrunedBodies int64     `json:"pruned_bodies"`
	Problems     []Problem `json:"problems"`
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Summary is the first line sessctl verify prints for a clean log:
// "ok: N records, M checkpoints, head <hex>, root <b64>".
func (r *Report) Summary() string {
	return fmt.Sprintf("ok: %d records, %d checkpoints, head %s, root %s", r.Records, r.Checkpoints, r.Head, r.Root)
}

// Verify opens the log at path read-only and verifies it (see
// [Reader.Verify]). An error means the log could not be verified at all;
// problems found in it are in the report.
func Verify(path string, opts VerifyOptions) (*Report, error) {
	r, err := OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rep, err := r.Verify(opts)
	if rep != nil {
		rep.Path = path
	}
	return rep, err
}

// entry is what Verify keeps about one stored leaf.
type entry struct {
	key    uint64
	seq    uint64
	hash   tlog.Hash
	prev   tlog.Hash
	ok     bool // decoded, with a well-formed prev
	kind   string
	extra  map[string]string
	keyBad bool
}

// Verify recomputes everything from the stored bytes, trusting no stored
// hash: it hashes every leaf, checks the chain links and sequence numbers,
// the body commitments, rebuilds the Merkle tree, and checks every stored
// and external checkpoint's signature and root.
func (r *Reader) Verify(opts VerifyOptions) (*Report, error) {
	var rep *Report
	err := r.db.View(func(tx *bbolt.Tx) error {
		var err error
		rep, err = verifyTx(tx, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

type verifier struct {
	src  *logSource
	opts VerifyOptions
	rep  *Report
	// problems keyed by seq and kind, to report each once.
	seen map[string]bool
	// Chain walk state.
	n       int64 // leaves seen (positions)
	last    tlog.Hash
	anomaly bool
	maxSeq  uint64
	haveSeq bool
	cps     []int64 // checkpoint sizes to compute roots for, ascending
	roots   map[int64]tlog.Hash
	stack   []tlog.Hash // compact range of the tree so far
	sizes   []int64     // subtree sizes in stack
	pruned  [][2]uint64
	noBody  []bodyRef
	lastSeq uint64
	lastOK  bool
	hashers *hashPool
}

type bodyRef struct {
	seq  uint64
	kind byte
}

// logSource is what the verifier reads: a log's stored leaves, bodies and
// checkpoints, and the hints its writer keeps beside them. The bbolt file
// (verifyTx) and a copy kept elsewhere (VerifyStored) provide one.
type logSource struct {
	cursor func() leafCursor // a new cursor over the leaves, in key order
	// body returns the stored salt ‖ body of seq's request or response
	// (kind bodyRequest or bodyResponse), nil if none; nil: no bodies.
	body func(seq uint64, kind byte) []byte
	// genesis is the leaf stored under key 0, nil if none.
	genesis []byte
	// origin and publicKey name the log when the genesis record does not.
	origin, publicKey string
	// checkpoints are the stored signed checkpoints, by tree size.
	checkpoints []storedCP
	// leafHash returns the leaf hash stored beside leaf seq (a hint an
	// attacker can rewrite too), nil if none.
	leafHash func(seq uint64) []byte
	// head is meta/head (BE64(size) ‖ leaf hash of the last record), nil
	// if the source keeps none.
	head []byte
}

// leafCursor walks stored leaves in key order, as a bbolt cursor does:
// First starts over, a nil key ends the walk.
type leafCursor interface {
	First() (key, leaf []byte)
	Next() (key, leaf []byte)
}

// storedCP is a stored checkpoint: its key (the tree size) and note.
type storedCP struct {
	key uint64
	msg []byte
}

func verifyTx(tx *bbolt.Tx, opts VerifyOptions) (*Report, error) {
	meta, leaves, bodies, cpb := tx.Bucket(bucketMeta), tx.Bucket(bucketLeaves), tx.Bucket(bucketBodies), tx.Bucket(bucketCheckpoints)
	if meta == nil || leaves == nil {
		return nil, errors.New("store: verify: not a sessctl log (no meta or leaves bucket)")
	}
	src := &logSource{
		cursor:    func() leafCursor { return leaves.Cursor() },
		genesis:   leaves.Get(u64key(0)),
		origin:    string(meta.Get(metaOrigin)),
		publicKey: string(meta.Get(metaPublicKey)),
		head:      meta.Get(metaHead),
		leafHash: func(seq uint64) []byte {
			tree := tx.Bucket(bucketTree)
			if tree == nil || seq >= 1<<62 {
				return nil
			}
			return tree.Get(u64key(uint64(tlog.StoredHashIndex(0, int64(seq)))))
		},
	}
	if bodies != nil {
		src.body = func(seq uint64, kind byte) []byte { return bodies.Get(bodyKey(seq, kind)) }
	}
	if cpb != nil {
		if err := cpb.ForEach(func(k, val []byte) error {
			if len(k) == 8 {
				src.checkpoints = append(src.checkpoints, storedCP{binary.BigEndian.Uint64(k), val})
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return verifySource(src, opts)
}

// verifySource is Verify on any copy of a log's stored bytes.
func verifySource(src *logSource, opts VerifyOptions) (*Report, error) {
	v := &verifier{src: src, opts: opts, rep: &Report{Problems: []Problem{}}, seen: map[string]bool{}, roots: map[int64]tlog.Hash{}}
	rep := v.rep
	rep.Origin = src.origin
	rep.PublicKey = src.publicKey

	// Genesis names the key that signs checkpoints.
	if g := src.genesis; g != nil {
		if h, err := decodeLeafHeader(g); err == nil && h.Kind == KindGenesis && h.Seq == 0 {
			if k := h.Extra["public_key"]; k != "" {
				rep.PublicKey = k
			}
			if o := h.Extra["origin"]; o != "" {
				rep.Origin = o
			}
		}
	}
	if opts.PublicKey != "" {
		if opts.PublicKey != rep.PublicKey {
			return nil, fmt.Errorf("%w (log key %s, pinned %s)", ErrWrongKey, rep.PublicKey, opts.PublicKey)
		}
		rep.KeyPinned = true
	}
	if _, err := note.NewVerifier(rep.PublicKey); err != nil {
		return nil, fmt.Errorf("store: verify: the log names no usable public key: %w", err)
	}

	// Collect checkpoint sizes first so the tree walk can compute their roots.
	stored := src.checkpoints
	for _, c := range stored {
		if c.key <= 1<<62 {
			v.cps = append(v.cps, int64(c.key))
		}
	}
	type extCP struct {
		c   Checkpoint
		msg []byte
	}
	var ext []extCP
	for _, msg := range opts.Checkpoints {
		c, err := ParseCheckpoint(noteText(msg))
		if err != nil || c.Origin != rep.Origin {
			continue
		}
		ext = append(ext, extCP{c, msg})
		v.cps = append(v.cps, c.Size)
	}
	if len(opts.Checkpoints) > 0 && len(ext) == 0 {
		return nil, fmt.Errorf("store: verify: no external checkpoint for origin %s", rep.Origin)
	}
	slices.Sort(v.cps)
	v.cps = slices.Compact(v.cps)

	// Pass 1: the chain, streaming.
	var entries []entry // only when pass 2 is needed
	v.hashers = newHashPool()
	err := v.walk(src.cursor(), src.body, func(e entry) {})
	for _, b := range v.hashers.wait() {
		v.add(b.seq, ProblemBodyModified, fmt.Sprintf("%s body does not match its commitment", bodyName(b.kind)))
	}
	if err != nil {
		return nil, err
	}
	if v.anomaly {
		// Pass 2: keep every entry and work out what happened.
		entries = make([]entry, 0, v.n)
		v2 := &verifier{src: src, opts: opts, rep: &Report{}, seen: map[string]bool{}, roots: map[int64]tlog.Hash{}}
		if err := v2.walk(src.cursor(), nil, func(e entry) { entries = append(entries, e) }); err != nil {
			return nil, err
		}
		v.classify(entries)
	}
	rep.Records = v.n
	if v.n == 0 {
		v.add(0, ProblemMissing, "the log has no records, not even genesis")
	}
	if v.n > 0 {
		rep.Head = hex.EncodeToString(v.last[:])
	}
	rep.Root = v.root().String()

	logSize := int64(0)
	if v.haveSeq {
		logSize = int64(v.maxSeq) + 1
	}
	// The last leaf has no successor to vouch for it: compare it with the
	// stored tree and head (which an attacker can rewrite; the signed
	// checkpoints are the real defence).
	if v.n > 0 && v.lastOK {
		switch sh := v.storedLeafHash(v.lastSeq); {
		case sh == nil:
			// The store writes a leaf and its tree hashes together.
			v.add(v.lastSeq, ProblemInserted, "no stored tree hash: not appended by sessctl")
		case !bytes.Equal(sh, v.last[:]):
			v.add(v.lastSeq, ProblemModified, "leaf hash differs from the stored tree")
		}
		if h := src.head; len(h) == 8+tlog.HashSize {
			switch n := binary.BigEndian.Uint64(h); {
			case n > uint64(logSize):
				v.add(uint64(logSize), ProblemMissing, fmt.Sprintf("head says %d records", n))
			case n < uint64(logSize):
				for seq := n; seq < uint64(logSize); seq++ {
					v.add(seq, ProblemInserted, fmt.Sprintf("beyond the head (%d records)", n))
				}
			case !bytes.Equal(h[8:], v.last[:]):
				v.add(v.lastSeq, ProblemModified, "leaf hash differs from the stored head")
			}
		}
	}
	firstBad := int64(-1)
	for _, p := range rep.Problems {
		switch p.Kind {
		case ProblemModified, ProblemMissing, ProblemInserted, ProblemReordered:
			if firstBad < 0 || int64(p.Seq) < firstBad {
				firstBad = int64(p.Seq)
			}
		}
	}

	// Bodies missing outside pruned ranges.
	for _, b := range v.noBody {
		if v.isPruned(b.seq) {
			rep.PrunedBodies++
			continue
		}
		v.add(b.seq, ProblemBodyMissing, fmt.Sprintf("%s body", bodyName(b.kind)))
	}

	truncN := int64(-1)
	// Stored checkpoints.
	for _, s := range stored {
		seq := uint64(0)
		if s.key > 0 {
			seq = s.key - 1
		}
		c, err := OpenCheckpoint(s.msg, rep.PublicKey)
		if err != nil {
			v.add(seq, ProblemBadSignature, fmt.Sprintf("stored checkpoint %d: %v", s.key, err))
			continue
		}
		rep.Checkpoints++
		switch {
		case c.Origin != rep.Origin || uint64(c.Size) != s.key:
			v.add(seq, ProblemCheckpointMismatch, fmt.Sprintf("stored under size %d but says %s size %d", s.key, c.Origin, c.Size))
		case c.Size > logSize:
			truncN = max(truncN, c.Size)
		case c.Size <= v.n && v.roots[c.Size] != c.Root && !(firstBad >= 0 && firstBad < c.Size):
			v.add(seq, ProblemCheckpointMismatch, fmt.Sprintf("checkpoint root %s, recomputed %s", c.Root, v.roots[c.Size]))
		}
	}
	// External checkpoints.
	for _, e := range ext {
		seq := uint64(0)
		if e.c.Size > 0 {
			seq = uint64(e.c.Size - 1)
		}
		if _, err := OpenCheckpoint(e.msg, rep.PublicKey); err != nil {
			v.add(seq, ProblemBadSignature, fmt.Sprintf("external checkpoint %d: %v", e.c.Size, err))
			continue
		}
		rep.Checkpoints++
		rep.External++
		switch {
		case e.c.Size > logSize:
			truncN = max(truncN, e.c.Size)
		case e.c.Size <= v.n && v.roots[e.c.Size] != e.c.Root && !(firstBad >= 0 && firstBad < e.c.Size):
			v.add(seq, ProblemForked, fmt.Sprintf("external checkpoint root %s, recomputed %s", e.c.Root, v.roots[e.c.Size]))
		}
	}
	if truncN >= 0 {
		v.add(uint64(logSize), fmt.Sprintf("%s (checkpoint says %d, log has %d)", ProblemTruncated, truncN, logSize), "")
	}
	slices.SortStableFunc(rep.Problems, func(a, b Problem) int {
		if a.Seq != b.Seq {
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		}
		return 0
	})
	return rep, nil
}

func bodyName(kind byte) string {
	if kind == bodyRequest {
		return "request"
	}
	return "response"
}

// noteText returns the text part of a signed note without checking it.
func noteText(msg []byte) string {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return ""
	}
	return string(msg[:i+1])
}

func (v *verifier) add(seq uint64, kind, detail string) {
	k := strconv.FormatUint(seq, 10) + "\x00" + kind
	if v.seen[k] {
		return
	}
	v.seen[k] = true
	v.rep.Problems = append(v.rep.Problems, Problem{Seq: seq, Kind: kind, Detail: detail})
}

func (v *verifier) isPruned(seq uint64) bool {
	for _, r := range v.pruned {
		if seq >= r[0] && seq <= r[1] {
			return true
		}
	}
	return false
}

// walk hashes every leaf in key order, checks links, sequence numbers and
// bodies (if bodies is non-nil), feeds the tree, and calls keep for each
// entry.
func (v *verifier) walk(c leafCursor, bodies func(seq uint64, kind byte) []byte, keep func(entry)) error {
	var prev tlog.Hash // zero: genesis has 64 zero digits as prev
	for k, leaf := c.First(); k != nil; k, leaf = c.Next() {
		e := entry{hash: tlog.RecordHash(leaf)}
		if len(k) == 8 {
			e.key = binary.BigEndian.Uint64(k)
		} else {
			e.keyBad = true
		}
		h, err := readHeader(leaf)
		if err == nil {
			e.seq, e.kind, e.extra = h.Seq, h.Kind, h.Extra
			if pb, err := hex.DecodeString(h.Prev); err == nil && len(pb) == tlog.HashSize {
				e.prev = tlog.Hash(pb)
				e.ok = true
			}
		}
		if !e.ok {
			e.seq = e.key
		}
		if !e.ok || e.keyBad || e.seq != uint64(v.n) || e.key != uint64(v.n) || e.prev != prev {
			v.anomaly = true
		}
		if e.ok && (!v.haveSeq || e.seq > v.maxSeq) {
			v.maxSeq, v.haveSeq = e.seq, true
		}
		if e.ok && e.kind == KindPrune {
			from, err1 := strconv.ParseUint(e.extra["from"], 10, 64)
			to, err2 := strconv.ParseUint(e.extra["to"], 10, 64)
			if err1 == nil && err2 == nil && from <= to && to < e.seq {
				v.pruned = append(v.pruned, [2]uint64{from, to})
			}
		}
		if bodies != nil && err == nil {
			v.checkBody(bodies, e.seq, bodyRequest, h.Request)
			v.checkBody(bodies, e.seq, bodyResponse, h.Response)
		}
		v.push(e.hash)
		prev = e.hash
		v.last, v.lastSeq, v.lastOK = e.hash, e.seq, e.ok
		keep(e)
	}
	return nil
}

func (v *verifier) checkBody(bodies func(seq uint64, kind byte) []byte, seq uint64, kind byte, c *Commitment) {
	if c == nil {
		return
	}
	val := bodies(seq, kind)
	if val == nil {
		v.noBody = append(v.noBody, bodyRef{seq, kind})
		return
	}
	v.rep.Bodies++
	v.rep.BodyBytes += int64(len(val) - min(len(val), saltSize))
	v.hashers.check(bodyCheck{seq: seq, kind: kind, val: val, c: c})
}

// bodyCheck is one body to hash. val points into the bbolt mmap, valid
// until the read transaction ends.
type bodyCheck struct {
	seq  uint64
	kind byte
	val  []byte
	c    *Commitment
}

// hashPool checks body commitments on all processors while the walk goes
// on; wait returns the bodies that did not match.
type hashPool struct {
	work chan []bodyCheck
	buf  []bodyCheck
	wg   sync.WaitGroup
	mu   sync.Mutex
	bad  []bodyCheck
}

func newHashPool() *hashPool {
	p := &hashPool{work: make(chan []bodyCheck, 64)}
	for range runtime.GOMAXPROCS(0) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for batch := range p.work {
				for _, b := range batch {
					if !checkBody(b.val, b.c) {
						p.mu.Lock()
						p.bad = append(p.bad, b)
						p.mu.Unlock()
					}
				}
			}
		}()
	}
	return p
}

func (p *hashPool) check(b bodyCheck) {
	p.buf = append(p.buf, b)
	if len(p.buf) == 64 {
		p.work <- p.buf
		p.buf = nil
	}
}

func (p *hashPool) wait() []bodyCheck {
	if len(p.buf) > 0 {
		p.work <- p.buf
	}
	close(p.work)
	p.wg.Wait()
	slices.SortFunc(p.bad, func(a, b bodyCheck) int {
		if a.seq != b.seq {
			if a.seq < b.seq {
				return -1
			}
			return 1
		}
		return int(a.kind) - int(b.kind)
	})
	return p.bad
}

// push adds a leaf hash to the compact range and records the root when the
// tree reaches a checkpoint size.
func (v *verifier) push(h tlog.Hash) {
	v.stack = append(v.stack, h)
	v.sizes = append(v.sizes, 1)
	for n := len(v.stack); n >= 2 && v.sizes[n-1] == v.sizes[n-2]; n = len(v.stack) {
		v.stack[n-2] = tlog.NodeHash(v.stack[n-2], v.stack[n-1])
		v.sizes[n-2] *= 2
		v.stack, v.sizes = v.stack[:n-1], v.sizes[:n-1]
	}
	v.n++
	for len(v.cps) > 0 && v.cps[0] <= v.n {
		if v.cps[0] == v.n {
			v.roots[v.n] = v.root()
		}
		v.cps = v.cps[1:]
	}
}

// storedLeafHash returns the level-0 hash the tree bucket holds for seq,
// or nil. It is a hint only: an attacker can rewrite the tree bucket.
func (v *verifier) storedLeafHash(seq uint64) []byte {
	if v.src.leafHash == nil {
		return nil
	}
	return v.src.leafHash(seq)
}

// root folds the compact range into the RFC 6962 tree hash.
func (v *verifier) root() tlog.Hash {
	if len(v.stack) == 0 {
		return tlog.Hash{}
	}
	h := v.stack[len(v.stack)-1]
	for i := len(v.stack) - 2; i >= 0; i-- {
		h = tlog.NodeHash(v.stack[i], h)
	}
	return h
}

// classify explains the anomalies of a damaged chain. Each record names
// its predecessor by hash; following those links tells a modified record
// (its successor names a hash nobody has), a missing one (a sequence
// number nobody has), an inserted one (a record nobody names, while its
// successor is named properly), and a reordered one (neither its
// predecessor nor its successor is its neighbour).
func (v *verifier) classify(es []entry) {
	pos := make(map[tlog.Hash]int, len(es))
	for i, e := range es {
		if _, dup := pos[e.hash]; !dup {
			pos[e.hash] = i
		}
	}
	succ := make(map[int]int, len(es)) // position -> position of the record naming it
	present := make(map[uint64]bool, len(es))
	for i, e := range es {
		if !e.ok {
			present[e.key] = true // reported as modified
			continue
		}
		present[e.seq] = true
		if p, ok := pos[e.prev]; ok {
			if _, dup := succ[p]; !dup {
				succ[p] = i
			}
		}
	}
	seqOf := func(i int) uint64 {
		if es[i].ok {
			return es[i].seq
		}
		return es[i].key
	}
	for i, e := range es {
		at := seqOf(i)
		if !e.keyBad {
			at = e.key
		}
		if !e.ok {
			v.add(at, ProblemModified, "leaf does not decode")
			continue
		}
		if first := pos[e.hash]; first != i {
			// The same bytes again: a copy of an earlier record.
			v.add(at, ProblemInserted, fmt.Sprintf("a copy of record %d", seqOf(first)))
			continue
		}
		genesisPrev := e.prev == (tlog.Hash{})
		p, predOK := pos[e.prev]
		dangling := !predOK && !genesisPrev
		predBroken := dangling || (predOK && p != i-1) || (genesisPrev && i != 0)
		s, hasSucc := succ[i]
		succBroken := (hasSucc && s != i+1) || (!hasSucc && i != len(es)-1)
		switch {
		case predBroken && succBroken && !dangling:
			v.add(at, ProblemReordered, "neither neighbour is its chain neighbour")
		case !hasSucc && i != len(es)-1:
			// Nobody names this record. If the next record names a hash
			// nobody has, this one was modified (unless records are
			// missing in between); if the next record names another
			// record properly, this one was inserted.
			next := es[i+1]
			if !next.ok || next.seq > e.seq+1 || pos[next.hash] != i+1 {
				break // records missing in between, or the next is a copy
			}
			_, nextOK := pos[next.prev]
			switch {
			case nextOK:
				v.add(at, ProblemInserted, "no record names it as predecessor")
			case bytes.Equal(v.storedLeafHash(e.seq), e.hash[:]):
				// This record is as appended (the stored tree agrees), so
				// the next one names a predecessor that never existed.
				if v.storedLeafHash(next.seq) == nil {
					v.add(next.key, ProblemInserted, "names an unknown predecessor and has no stored tree hash")
				} else {
					v.add(next.key, ProblemModified, "names an unknown predecessor")
				}
			default:
				v.add(at, ProblemModified, "its successor names a different hash")
			}
		}
	}
	// Sequence numbers nobody has.
	if v.haveSeq {
		for s := uint64(0); s <= v.maxSeq; s++ {
			if !present[s] {
				v.add(s, ProblemMissing, "no record has this sequence number")
			}
		}
	}
}
