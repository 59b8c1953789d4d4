package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// Buckets of witnessed checkpoints (FORMAT.md §5.1). They are created by
// the first write, so a log written before witnesses existed has neither.
var (
	bucketCosigned  = []byte("cosigned")
	bucketWitnesses = []byte("witnesses")
)

// maxSigLines bounds the signature lines kept on one checkpoint: the log's
// own and one per witness, with room to spare.
const maxSigLines = 64

// AddCosignatures adds note signature lines (each "— name base64\n", as a
// C2SP tlog-witness add-checkpoint answer carries them) to the stored
// checkpoint of size records, keeping its cosigned form in the cosigned
// bucket. A line from a key already present on that checkpoint (same name
// and key hash) replaces the older one. The caller checks the
// cosignatures; the store only checks their syntax and that the checkpoint
// exists.
func (s *Store) AddCosignatures(size int64, lines []byte) error {
	add, err := parseSigLines(lines)
	if err != nil {
		return fmt.Errorf("store: add cosignatures to checkpoint %d: %w", size, err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		msg := tx.Bucket(bucketCheckpoints).Get(u64key(uint64(size)))
		if msg == nil {
			return fmt.Errorf("no checkpoint of %d records", size)
		}
		b, err := tx.CreateBucketIfNotExists(bucketCosigned)
		if err != nil {
			return err
		}
		if cur := b.Get(u64key(uint64(size))); cur != nil {
			msg = cur
		}
		merged, err := mergeSignatures(msg, add)
		if err != nil {
			return err
		}
		return b.Put(u64key(uint64(size)), merged)
	})
	if err != nil {
		return fmt.Errorf("store: add cosignatures to checkpoint %d: %w", size, err)
	}
	return nil
}

// CosignedCheckpoint returns the signed checkpoint of size records with
// every cosignature stored for it (FORMAT.md §5.1); without any, the log's
// signed note alone. It returns ErrNotFound if there is no such checkpoint.
func (r *Reader) CosignedCheckpoint(size int64) ([]byte, error) {
	return cosignedCheckpoint(r.db, size)
}

// CosignedCheckpoint is [Reader.CosignedCheckpoint] on the live log.
func (s *Store) CosignedCheckpoint(size int64) ([]byte, error) {
	return cosignedCheckpoint(s.db, size)
}

// LatestCosigned returns the newest signed checkpoint, with the
// cosignatures stored for it, and its size. It returns ErrNotFound if
// the log has no checkpoint yet.
func (r *Reader) LatestCosigned() ([]byte, int64, error) { return latestCosigned(r.db) }

// LatestCosigned is [Reader.LatestCosigned] on the live log.
func (s *Store) LatestCosigned() ([]byte, int64, error) { return latestCosigned(s.db) }

func cosignedCheckpoint(db *bbolt.DB, size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("store: checkpoint %d: %w", size, ErrNotFound)
	}
	var out []byte
	err := db.View(func(tx *bbolt.Tx) error {
		out = cosignedIn(tx, uint64(size))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: checkpoint %d: %w", size, err)
	}
	if out == nil {
		return nil, fmt.Errorf("store: checkpoint %d: %w", size, ErrNotFound)
	}
	return out, nil
}

func latestCosigned(db *bbolt.DB) ([]byte, int64, error) {
	var out []byte
	var size uint64
	err := db.View(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketCheckpoints).Cursor().Last()
		if k == nil {
			return nil
		}
		size = binary.BigEndian.Uint64(k)
		out = cosignedIn(tx, size)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store: latest checkpoint: %w", err)
	}
	if out == nil {
		return nil, 0, fmt.Errorf("store: latest checkpoint: %w", ErrNotFound)
	}
	return out, int64(size), nil
}

// cosignedIn returns a copy of the cosigned (else the plain) checkpoint of
// size records, or nil.
func cosignedIn(tx *bbolt.Tx, size uint64) []byte {
	if b := tx.Bucket(bucketCosigned); b != nil {
		if v := b.Get(u64key(size)); v != nil {
			return bytes.Clone(v)
		}
	}
	if v := tx.Bucket(bucketCheckpoints).Get(u64key(size)); v != nil {
		return bytes.Clone(v)
	}
	return nil
}

// WitnessSize returns the tree size the log last had cosigned by the
// witness named name (0 if never): the old size of the next add-checkpoint
// request. It is a hint the witness corrects with 409 Conflict.
func (s *Store) WitnessSize(name string) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketWitnesses)
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(name)); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: witness %s: %w", name, err)
	}
	return n, nil
}

// SetWitnessSize records that the witness named name holds a checkpoint
// of size records.
func (s *Store) SetWitnessSize(name string, size int64) error {
	if size < 0 {
		return fmt.Errorf("store: witness %s: negative size", name)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketWitnesses)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), u64key(uint64(size)))
	})
	if err != nil {
		return fmt.Errorf("store: witness %s: %w", name, err)
	}
	return nil
}

// ProveConsistency is [Reader.ProveConsistency] on the live log.
func (s *Store) ProveConsistency(oldSize, newSize int64) (tlog.TreeProof, error) {
	return proveConsistency(s.db, oldSize, newSize)
}

// sigLine is one parsed note signature line.
type sigLine struct {
	name string
	hash uint32
	line []byte // with its newline
}

// parseSigLines parses a sequence of note signature lines.
func parseSigLines(data []byte) ([]sigLine, error) {
	var out []sigLine
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil, errors.New("signature line without a newline")
		}
		line := data[:i+1]
		data = data[i+1:]
		l, err := parseSigLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
		if len(out) > maxSigLines {
			return nil, errors.New("too many signature lines")
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no signature line")
	}
	return out, nil
}

func parseSigLine(line []byte) (sigLine, error) {
	rest, ok := bytes.CutPrefix(line, []byte("— "))
	if !ok || !utf8.Valid(line) {
		return sigLine{}, fmt.Errorf("not a note signature line: %.40q", line)
	}
	rest = bytes.TrimSuffix(rest, []byte("\n"))
	name, b64, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(name) == 0 || bytes.ContainsAny(name, " +") {
		return sigLine{}, fmt.Errorf("malformed signature line: %.40q", line)
	}
	sig, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(sig) < 5 {
		return sigLine{}, fmt.Errorf("malformed signature in line: %.40q", line)
	}
	return sigLine{name: string(name), hash: binary.BigEndian.Uint32(sig), line: line}, nil
}

// mergeSignatures returns the note msg with the lines of add appended, a
// line replacing an existing one of the same key.
func mergeSignatures(msg []byte, add []sigLine) ([]byte, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil, errors.New("stored checkpoint is not a signed note")
	}
	body := msg[:i+2]
	have, err := parseSigLines(msg[i+2:])
	if err != nil {
		return nil, fmt.Errorf("stored checkpoint: %w", err)
	}
	for _, a := range add {
		replaced := false
		for j, h := range have {
			if h.name == a.name && h.hash == a.hash {
				if j == 0 {
					// The log's own signature stays first and unchanged.
					replaced = true
					break
				}
				have[j], replaced = a, true
				break
			}
		}
		if !replaced {
			have = append(have, a)
		}
	}
	if len(have) > maxSigLines {
		return nil, errors.New("too many signature lines")
	}
	out := bytes.Clone(body)
	for _, h := range have {
		out = append(out, h.line...)
	}
	return out, nil
}
