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

// Problem kinds reported by Verify and VerifyExport.
const (
	ProblemModified           = "modified"
	ProblemMissing            = "missing"
	ProblemInserted           = "inserted"
	ProblemReordered          = "reordered"
	ProblemBodyModified       = "body modified"
	ProblemBodyMissing        = "body missing"
	ProblemBadSignature       = "bad checkpoint signature"
	ProblemCheckpointMismatch = "checkpoint mismatch"
	ProblemTruncated          = "truncated" // Detail: "checkpoint says N, log has M"
	ProblemForked             = "forked"
	ProblemChainBroken        = "chain broken" // VerifyExport: a record's prev is not its predecessor's hash
)

// Problem is one integrity failure found by Verify.
type Problem struct {
	Seq  uint64 `json:"seq"`
	Kind string `json:"kind"` // one of the Problem* constants
	// Detail says what was compared, for humans.
	Detail string `json:"detail,omitempty"`
}

// String formats p as "record <seq>: <kind>"; a truncation carries its
// counts: "record <seq>: truncated (checkpoint says N, log has M)".
func (p Problem) String() string {
	if p.Kind == ProblemTruncated {
		return p.full()
	}
	return fmt.Sprintf("record %d: %s", p.Seq, p.Kind)
}

// full formats p with its detail: "record <seq>: <kind> (<detail>)", the
// words of a problem in an export's report.
func (p Problem) full() string {
	if p.Detail == "" {
		return p.String()
	}
	return fmt.Sprintf("record %d: %s (%s)", p.Seq, p.Kind, p.Detail)
}

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
	// Progress, if set, is called now and then with the records hashed so
	// far and the records in the log (for a progress line).
	Progress func(done, total uint64)
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
	kind   Kind
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
	tree    treeRoots // the tree so far, and its roots at checkpoint sizes
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

// verifyTx runs the phases of Verify in order. Each phase is a function
// of its own; the tree roots (treeRoots), the external checkpoints
// (checkpointsOf) and the check of a checkpoint against the recomputed
// roots (checkRoot) are shared with VerifyExport.
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

// verifySource runs the phases of Verify in order on any copy of a log's
// stored bytes.
func verifySource(src *logSource, opts VerifyOptions) (*Report, error) {
	v := &verifier{src: src, opts: opts, rep: &Report{Problems: []Problem{}}, seen: map[string]bool{}}
	if err := v.identify(); err != nil {
		return nil, err
	}
	stored, ext, err := v.checkpoints()
	if err != nil {
		return nil, err
	}
	if err := v.walkChain(); err != nil {
		return nil, err
	}
	logSize := v.totals()
	v.checkTail(logSize)
	firstBad := firstBreak(v.rep.Problems)
	v.checkMissingBodies()
	truncN := v.checkStored(stored, logSize, firstBad)
	truncN = max(truncN, v.checkExternal(ext, logSize, firstBad))
	if truncN >= 0 {
		v.add(uint64(logSize), ProblemTruncated, fmt.Sprintf("checkpoint says %d, log has %d", truncN, logSize))
	}
	slices.SortStableFunc(v.rep.Problems, func(a, b Problem) int {
		if a.Seq != b.Seq {
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		}
		return 0
	})
	return v.rep, nil
}

// identify takes the log's origin and checkpoint key from the meta bucket
// (or what stands for it) and the genesis record (which names the key that
// signs checkpoints), and checks them against the pinned key.
func (v *verifier) identify() error {
	rep := v.rep
	rep.Origin = v.src.origin
	rep.PublicKey = v.src.publicKey
	if g := v.src.genesis; g != nil {
		if h, err := decodeLeafHeader(g); err == nil && h.Kind == KindGenesis && h.Seq == 0 {
			if k := h.Extra["public_key"]; k != "" {
				rep.PublicKey = k
			}
			if o := h.Extra["origin"]; o != "" {
				rep.Origin = o
			}
		}
	}
	if v.opts.PublicKey != "" {
		if v.opts.PublicKey != rep.PublicKey {
			return fmt.Errorf("%w (log key %s, pinned %s)", ErrWrongKey, rep.PublicKey, v.opts.PublicKey)
		}
		rep.KeyPinned = true
	}
	if _, err := note.NewVerifier(rep.PublicKey); err != nil {
		return fmt.Errorf("store: verify: the log names no usable public key: %w", err)
	}
	return nil
}

// storedCP is a checkpoint from the checkpoints bucket, under its key.
type storedCP struct {
	key uint64
	msg []byte
}

// checkpoints collects the stored and external checkpoints first, so that
// the tree walk computes the roots at their sizes.
func (v *verifier) checkpoints() ([]storedCP, []signedCheckpoint, error) {
	stored := v.src.checkpoints
	var sizes []int64
	for _, c := range stored {
		if c.key <= 1<<62 {
			sizes = append(sizes, int64(c.key))
		}
	}
	ext := checkpointsOf(v.opts.Checkpoints, v.rep.Origin)
	if len(v.opts.Checkpoints) > 0 && len(ext) == 0 {
		return nil, nil, fmt.Errorf("store: verify: no external checkpoint for origin %s", v.rep.Origin)
	}
	for _, e := range ext {
		sizes = append(sizes, e.c.Size)
	}
	v.tree.want(sizes)
	return stored, ext, nil
}

// walkChain hashes the chain in one streaming pass, checking the bodies
// on all processors meanwhile; if the chain is damaged, a second pass
// keeps every entry and classifies what happened.
func (v *verifier) walkChain() error {
	v.hashers = newHashPool()
	err := v.walk(v.src.cursor(), v.src.body, func(e entry) {})
	for _, b := range v.hashers.wait() {
		v.add(b.seq, ProblemBodyModified, fmt.Sprintf("%s body does not match its commitment", bodyName(b.kind)))
	}
	if err != nil {
		return err
	}
	if v.anomaly {
		entries := make([]entry, 0, v.n)
		v2 := &verifier{src: v.src, opts: v.opts, rep: &Report{}, seen: map[string]bool{}}
		if err := v2.walk(v.src.cursor(), nil, func(e entry) { entries = append(entries, e) }); err != nil {
			return err
		}
		v.classify(entries)
	}
	return nil
}

// totals fills in the record count, head and root, and returns the size
// of the log the sequence numbers claim.
func (v *verifier) totals() int64 {
	rep := v.rep
	rep.Records = v.n
	if v.n == 0 {
		v.add(0, ProblemMissing, "the log has no records, not even genesis")
	}
	if v.n > 0 {
		rep.Head = hex.EncodeToString(v.last[:])
	}
	rep.Root = v.tree.root().String()
	if v.haveSeq {
		return int64(v.maxSeq) + 1
	}
	return 0
}

// checkTail compares the last leaf, which has no successor to vouch for
// it, with the stored tree and head (which an attacker can rewrite; the
// signed checkpoints are the real defence).
func (v *verifier) checkTail(logSize int64) {
	if v.n == 0 || !v.lastOK {
		return
	}
	switch sh := v.storedLeafHash(v.lastSeq); {
	case sh == nil:
		// The store writes a leaf and its tree hashes together.
		v.add(v.lastSeq, ProblemInserted, "no stored tree hash: not appended by sessctl")
	case !bytes.Equal(sh, v.last[:]):
		v.add(v.lastSeq, ProblemModified, "leaf hash differs from the stored tree")
	}
	if h := v.src.head; len(h) == 8+tlog.HashSize {
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

// firstBreak is the first record the chain problems found so far touch,
// or -1: checkpoints over it are not compared again (their mismatch
// follows from it).
func firstBreak(problems []Problem) int64 {
	firstBad := int64(-1)
	for _, p := range problems {
		switch p.Kind {
		case ProblemModified, ProblemMissing, ProblemInserted, ProblemReordered:
			if firstBad < 0 || int64(p.Seq) < firstBad {
				firstBad = int64(p.Seq)
			}
		}
	}
	return firstBad
}

// checkMissingBodies reports the committed bodies that are gone outside
// the pruned ranges, and counts those pruned.
func (v *verifier) checkMissingBodies() {
	for _, b := range v.noBody {
		if v.isPruned(b.seq) {
			v.rep.PrunedBodies++
			continue
		}
		v.add(b.seq, ProblemBodyMissing, fmt.Sprintf("%s body", bodyName(b.kind)))
	}
}

// checkStored checks each stored checkpoint's signature, key and root. It
// returns the largest size past the end of the log, or -1.
func (v *verifier) checkStored(stored []storedCP, logSize, firstBad int64) int64 {
	rep, truncN := v.rep, int64(-1)
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
		case c.Size <= v.n && !checkRoot(c, &v.tree, firstBad):
			v.add(seq, ProblemCheckpointMismatch, fmt.Sprintf("checkpoint root %s, recomputed %s", c.Root, v.tree.roots[c.Size]))
		}
	}
	return truncN
}

// checkExternal checks each external checkpoint's signature and root: a
// root that differs means the log was forked. It returns the largest size
// past the end of the log, or -1.
func (v *verifier) checkExternal(ext []signedCheckpoint, logSize, firstBad int64) int64 {
	rep, truncN := v.rep, int64(-1)
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
		case e.c.Size <= v.n && !checkRoot(e.c, &v.tree, firstBad):
			v.add(seq, ProblemForked, fmt.Sprintf("external checkpoint root %s, recomputed %s", e.c.Root, v.tree.roots[e.c.Size]))
		}
	}
	return truncN
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
	report := func(uint64) {}
	if bc, ok := c.(*bbolt.Cursor); ok {
		report = progressFunc(v.opts.Progress, bc)
	}
	for k, leaf := c.First(); k != nil; k, leaf = c.Next() {
		report(uint64(v.n))
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

// push adds a leaf hash to the tree.
func (v *verifier) push(h tlog.Hash) {
	v.tree.add(h)
	v.n++
}

// storedLeafHash returns the level-0 hash the tree bucket holds for seq,
// or nil. It is a hint only: an attacker can rewrite the tree bucket.
func (v *verifier) storedLeafHash(seq uint64) []byte {
	if v.src.leafHash == nil {
		return nil
	}
	return v.src.leafHash(seq)
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
