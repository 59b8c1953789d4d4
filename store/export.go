package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ExportOptions select what [Export] writes.
type ExportOptions struct {
	// From is the first sequence number exported.
	From uint64
	// Limit bounds the records exported; 0 means up to the end of the log.
	Limit int
	// Bodies adds each record's stored (masked) prompt and answer.
	Bodies bool
}

// ExportLine is one line of a JSONL export. Record holds the leaf's JSON
// byte for byte as stored, so that
//
//	tlog.RecordHash([]byte(LeafPrefix) + Record) == Hash
//
// and a complete export (from 0) rebuilds the Merkle tree whose root a
// signed checkpoint names.
type ExportLine struct {
	// Hash is the hex SHA-256 leaf hash (tlog.RecordHash) of the record,
	// which the next record names as its prev.
	Hash   string          `json:"hash"`
	Record json.RawMessage `json:"record"`
	Prompt *string         `json:"prompt,omitempty"`
	Answer *string         `json:"answer,omitempty"`
}

// LeafSource is a session log that hands out its stored leaf bytes, as
// [Store] and [Reader] do (see [Reader.Leaves]).
type LeafSource interface {
	Leaves(from uint64, fn func(seq uint64, leaf, req, resp []byte) error) error
}

// Export writes the log as JSON lines (see [ExportLine]) in sequence order
// from o.From, in constant memory, and returns the number of records
// written. It stops at the end of the log or when ctx is done.
//
// Each line carries the leaf's bytes as stored, never a re-encoding. The store checks the
// chain as it hands the leaves out; Export writes a record only once the
// next one has been read and names its hash as prev, so a log altered in
// place fails the export before the altered record's line. The newest
// record has no successor to vouch for it.
func Export(ctx context.Context, w io.Writer, ls LeafSource, o ExportOptions) (n int, err error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	defer func() {
		// Lines written before a failure still reach w.
		if ferr := bw.Flush(); err == nil && ferr != nil {
			err = fmt.Errorf("export: %w", ferr)
		}
	}()
	// held is the newest record read, written when its successor comes.
	var held *storedLeaf
	write := func(l *storedLeaf) error {
		record, ok := bytes.CutPrefix(l.leaf, []byte(LeafPrefix))
		if !ok {
			return fmt.Errorf("record %d: leaf does not start with %q", l.seq, LeafPrefix)
		}
		h := tlog.RecordHash(l.leaf)
		if err := writeExportLine(bw, hex.EncodeToString(h[:]), record, l.req, l.resp, o.Bodies); err != nil {
			return err
		}
		n++
		return nil
	}
	err = ls.Leaves(o.From, func(seq uint64, leaf, req, resp []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if held != nil {
			if err := write(held); err != nil {
				return err
			}
			if o.Limit > 0 && n >= o.Limit {
				return errStop
			}
		}
		held = &storedLeaf{seq, leaf, req, resp}
		return nil
	})
	if err == nil && held != nil {
		err = write(held)
	}
	if err != nil && !errors.Is(err, errStop) {
		return n, fmt.Errorf("export: %w", err)
	}
	return n, nil
}

// writeExportLine writes one ExportLine without re-encoding the record:
// encoding/json would rewrite "<" and ">" in a RawMessage.
func writeExportLine(w *bufio.Writer, hash string, record, req, resp []byte, bodies bool) error {
	w.WriteString(`{"hash":"`)
	w.WriteString(hash)
	w.WriteString(`","record":`)
	w.Write(record)
	if bodies {
		for _, b := range []struct {
			name string
			v    []byte
		}{{"prompt", req}, {"answer", resp}} {
			if b.v == nil {
				continue
			}
			s, err := json.Marshal(string(b.v))
			if err != nil {
				return err
			}
			w.WriteString(`,"` + b.name + `":`)
			w.Write(s)
		}
	}
	_, err := w.WriteString("}\n")
	return err
}

// ParseExportLine decodes one line of an export and checks that its record
// hashes to its hash. It returns the decoded record.
func ParseExportLine(line []byte) (*ExportLine, *Record, error) {
	l, leaf, h, err := decodeExportLine(line)
	if err != nil {
		return nil, nil, err
	}
	rec, err := DecodeLeaf(leaf)
	if err != nil {
		return nil, nil, fmt.Errorf("export line: %w", err)
	}
	if hex.EncodeToString(h[:]) != l.Hash {
		return nil, nil, fmt.Errorf("export line: record %d does not hash to %s", rec.Seq, l.Hash)
	}
	return l, rec, nil
}

// decodeExportLine decodes the JSON of a line and returns the leaf bytes
// it carries (LeafPrefix ‖ record) and their hash.
func decodeExportLine(line []byte) (*ExportLine, []byte, tlog.Hash, error) {
	var l ExportLine
	if err := json.Unmarshal(line, &l); err != nil {
		return nil, nil, tlog.Hash{}, fmt.Errorf("export line: %w", err)
	}
	record := bytes.TrimSpace(l.Record)
	if len(record) == 0 || record[0] != '{' {
		return nil, nil, tlog.Hash{}, errors.New("export line: no record object")
	}
	leaf := append([]byte(LeafPrefix), record...)
	return &l, leaf, tlog.RecordHash(leaf), nil
}

// ExportReport is what [VerifyExport] found.
type ExportReport struct {
	// Records is the number of records (lines) in the export.
	Records int64 `json:"records"`
	// Origin and PublicKey identify the log: from the export's genesis
	// record, or from the pinned key.
	Origin    string `json:"origin"`
	PublicKey string `json:"public_key"`
	// KeyPinned tells whether the caller pinned the key; if not, the key
	// is the one the export's own genesis record names.
	KeyPinned bool `json:"key_pinned"`
	// Checkpoints is the number of signed checkpoints checked (those of
	// this origin no larger than the export).
	Checkpoints int `json:"checkpoints"`
	// Size and Root are the largest checkpoint checked and its root.
	// Records from Size on are vouched for by the hash chain only.
	Size int64  `json:"checkpoint_size"`
	Root string `json:"root"`
	// Beyond counts the checkpoints of this log larger than the export
	// (signed after it was taken), which could not be checked.
	Beyond int `json:"beyond"`
	// Problems lists what does not verify, one line each: a record's
	// problem as [Problem] words it with its detail ("record 6: modified
	// (...)"), a line that cannot be read as "line N: ...".
	Problems []string `json:"problems"`
}

// OK reports whether no problem was found.
func (r *ExportReport) OK() bool { return len(r.Problems) == 0 }

// Summary is the first line `sessctl verify --export` prints for a clean
// export: "ok: N records, checkpoint size M, root <base64>".
func (r *ExportReport) Summary() string {
	return fmt.Sprintf("ok: %d records, checkpoint size %d, root %s", r.Records, r.Size, r.Root)
}

// maxExportLine bounds one line of an export (a leaf is at most 16 MiB;
// bodies come on top, JSON-escaped).
const maxExportLine = 512 << 20

// VerifyExport checks a JSONL export (see [Export]) offline against signed
// checkpoints: that each line's record hashes to its hash, that the lines
// hold records 0, 1, 2, … each naming the hash of the one before as prev,
// and that the Merkle tree of the hashes has, at each checkpoint's size,
// the root the checkpoint signs. checkpoints are signed notes (see
// SplitNotes); those of other logs are ignored. pubkey pins the
// signer (a note verifier key); empty trusts the key the export's genesis
// record names, which proves consistency, not origin.
//
// Problems found are in the report. An error means the export could not
// be verified at all: unreadable, not starting with the genesis record, no
// checkpoint of its log, none small enough, or not the pinned key.
func VerifyExport(r io.Reader, checkpoints [][]byte, pubkey string) (*ExportReport, error) {
	rep := &ExportReport{Problems: []string{}, PublicKey: pubkey, KeyPinned: pubkey != ""}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	var (
		tree     treeRoots   // the tree of the lines' bytes, with the roots at checkpoint sizes
		prevHash string      // the hash the previous line claims
		prevSeq  int64       // the previous line's record, -1 if none or unreadable
		firstBad = int64(-1) // first position with a problem
		expect   uint64      // the seq the next line should hold
	)
	prevSeq = -1
	problem := func(pos int64, format string, args ...any) {
		rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		if firstBad < 0 {
			firstBad = pos
		}
	}
	// recordProblem reports p in the words of Verify (see Problem.full).
	recordProblem := func(pos int64, p Problem) { problem(pos, "%s", p.full()) }
	var cps []signedCheckpoint
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		pos := rep.Records
		lineNo := pos + 1
		l, leaf, h, err := decodeExportLine(line)
		var rec *Record
		if err == nil {
			rec, err = DecodeLeaf(leaf)
		}
		if pos == 0 {
			// The genesis record names the log and its key.
			if err := exportGenesis(rep, rec); err != nil {
				return nil, err
			}
			for _, c := range checkpointsOf(checkpoints, rep.Origin) {
				if c.c.Size > 0 {
					cps = append(cps, c)
				}
			}
			if len(cps) == 0 {
				return nil, fmt.Errorf("verify export: no checkpoint of the log %s", rep.Origin)
			}
			sizes := make([]int64, len(cps))
			for i, c := range cps {
				sizes[i] = c.c.Size
			}
			tree.want(sizes)
		}
		switch {
		case err != nil:
			problem(pos, "line %d: %v", lineNo, err)
		case rec.Seq != expect:
			problem(pos, "line %d: record %d where record %d belongs: records are missing, reordered or inserted", lineNo, rec.Seq, expect)
		}
		if err == nil {
			if hex.EncodeToString(h[:]) != l.Hash {
				recordProblem(pos, Problem{rec.Seq, ProblemModified, "its bytes do not hash to the line's hash"})
			}
			// Links between lines out of order are not checked: their
			// order is reported already.
			switch {
			case rec.Seq == 0 && rec.Prev != genesisPrev:
				recordProblem(pos, Problem{0, ProblemModified, "genesis names a prev"})
			case rec.Seq > 0 && prevSeq == int64(rec.Seq)-1 && rec.Prev != prevHash:
				recordProblem(pos, Problem{rec.Seq, ProblemChainBroken, fmt.Sprintf("its prev is not the hash of record %d, so one of the two was modified", rec.Seq-1)})
			}
			expect, prevHash, prevSeq = max(expect, rec.Seq+1), l.Hash, int64(rec.Seq)
		} else {
			expect++
			prevHash, prevSeq = "", -1
		}
		// The tree is built from the bytes, whatever the lines claim.
		tree.add(h)
		rep.Records++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("verify export: line %d: %w", rep.Records+1, err)
	}
	if rep.Records == 0 {
		return nil, errors.New("verify export: the export is empty")
	}
	smallest := int64(-1)
	for _, c := range cps {
		if smallest < 0 || c.c.Size < smallest {
			smallest = c.c.Size
		}
		if c.c.Size > rep.Records {
			rep.Beyond++ // exported before the log grew this far
			continue
		}
		if _, err := OpenCheckpoint(c.msg, rep.PublicKey); err != nil {
			rep.Problems = append(rep.Problems, Problem{uint64(c.c.Size - 1), ProblemBadSignature, fmt.Sprintf("checkpoint of size %d: %v", c.c.Size, err)}.full())
			continue
		}
		rep.Checkpoints++
		if root := tree.roots[c.c.Size]; !checkRoot(c.c, &tree, firstBad) {
			rep.Problems = append(rep.Problems, Problem{uint64(c.c.Size - 1), ProblemCheckpointMismatch,
				fmt.Sprintf("the checkpoint of size %d signs root %s, the export's records give %s", c.c.Size, c.c.Root, root)}.full())
		}
		if c.c.Size > rep.Size {
			rep.Size, rep.Root = c.c.Size, c.c.Root.String()
		}
	}
	if rep.Checkpoints == 0 && rep.OK() {
		return nil, fmt.Errorf("verify export: the export has %d records, fewer than the smallest checkpoint (%d): nothing to check it against", rep.Records, smallest)
	}
	return rep, nil
}

// exportGenesis takes the log's origin and key from the genesis record (or
// checks them against the pinned key). rec is nil if the first line does
// not decode.
func exportGenesis(rep *ExportReport, rec *Record) error {
	if rec != nil && rec.Seq != 0 {
		return fmt.Errorf("verify export: the export starts at record %d; only a complete export (from record 0) can be checked against a checkpoint", rec.Seq)
	}
	var origin, key string
	if rec != nil && rec.Kind == KindGenesis {
		origin, key = rec.Extra["origin"], rec.Extra["public_key"]
	}
	switch {
	case rep.KeyPinned && key != "" && key != rep.PublicKey:
		return fmt.Errorf("verify export: the log is signed by %s, not by the pinned key %s", key, rep.PublicKey)
	case rep.KeyPinned:
		// A note key is named after the log's origin.
		origin = strings.SplitN(rep.PublicKey, "+", 2)[0]
	case key == "" || origin == "":
		return errors.New("verify export: the first line is not a readable genesis record naming the log's key; pin the key with --pubkey to check the rest")
	default:
		rep.PublicKey = key
	}
	if _, err := note.NewVerifier(rep.PublicKey); err != nil {
		return fmt.Errorf("verify export: public key: %w", err)
	}
	rep.Origin = origin
	return nil
}
