package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sessctl/sessctl/store"
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
//	tlog.RecordHash([]byte(store.LeafPrefix) + Record) == Hash
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

// Export writes the log as JSON lines (see [ExportLine]) in sequence order
// from o.From, in constant memory, and returns the number of records
// written. It stops at the first missing sequence number (the end of the
// log) or when ctx is done.
//
// The store does not hand out leaf bytes, so Export re-encodes each record
// with store.EncodeLeaf (which the store documents as reproducing the leaf
// byte for byte) and checks the result against the chain: the hash of
// record n must equal the prev of record n+1. A mismatch means the log
// was altered or damaged, and Export fails instead of writing a line that
// would not verify. The newest record has no successor to check against.
func Export(ctx context.Context, w io.Writer, src SessionSource, o ExportOptions) (n int, err error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	defer func() {
		// Lines written before a failure still reach w.
		if ferr := bw.Flush(); err == nil && ferr != nil {
			err = fmt.Errorf("export: %w", ferr)
		}
	}()
	get := func(seq uint64) (*store.Record, []byte, []byte, error) {
		rec, req, resp, err := src.Get(strconv.FormatUint(seq, 10))
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, nil, nil
		}
		if err == nil && rec.Seq != seq {
			err = fmt.Errorf("record %d: the store returned record %d", seq, rec.Seq)
		}
		return rec, req, resp, err
	}
	cur, req, resp, err := get(o.From)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	for cur != nil && (o.Limit == 0 || n < o.Limit) {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		leaf, err := store.EncodeLeaf(cur)
		if err != nil {
			return n, fmt.Errorf("export: record %d: %w", cur.Seq, err)
		}
		h := tlog.RecordHash(leaf)
		hash := hex.EncodeToString(h[:])
		next, nreq, nresp, err := get(cur.Seq + 1)
		if err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		if next != nil && next.Prev != hash {
			return n, fmt.Errorf("export: record %d does not hash to the prev of record %d: the log is damaged or was altered (run sessctl verify)", cur.Seq, next.Seq)
		}
		if err := writeExportLine(bw, hash, leaf[len(store.LeafPrefix):], req, resp, o.Bodies); err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		n++
		cur, req, resp = next, nreq, nresp
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
func ParseExportLine(line []byte) (*ExportLine, *store.Record, error) {
	var l ExportLine
	if err := json.Unmarshal(line, &l); err != nil {
		return nil, nil, fmt.Errorf("export line: %w", err)
	}
	leaf := append([]byte(store.LeafPrefix), bytes.TrimSpace(l.Record)...)
	rec, err := store.DecodeLeaf(leaf)
	if err != nil {
		return nil, nil, fmt.Errorf("export line: %w", err)
	}
	h := tlog.RecordHash(leaf)
	if hex.EncodeToString(h[:]) != l.Hash {
		return nil, nil, fmt.Errorf("export line: record %d does not hash to %s", rec.Seq, l.Hash)
	}
	return &l, rec, nil
}
