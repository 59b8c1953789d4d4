package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"
)

// SealedBody is a body as the log stores it: the random salt and the bytes
// the commitment in the record covers (FORMAT.md §3).
type SealedBody struct {
	Salt, Body []byte
}

// StoredRecord is one record as the log stores it, for copying the log
// elsewhere byte for byte: the leaf exactly as stored and hashed, and its
// sealed bodies (nil if none or pruned).
type StoredRecord struct {
	Seq               uint64
	Leaf              []byte
	Request, Response *SealedBody
}

// StoredRecords calls fn with each record from sequence number from to the end
// of the log, in order, with its leaf and sealed bodies as stored. It
// reads and checks the chain as [Store.Leaves] does (short read
// transactions, an error at a break); an error from fn stops the walk and
// is returned.
func (s *Store) StoredRecords(from uint64, fn func(StoredRecord) error) error {
	return records(s.db, from, fn)
}

// StoredRecords is [Store.StoredRecords] on a log opened read-only.
func (r *Reader) StoredRecords(from uint64, fn func(StoredRecord) error) error {
	return records(r.db, from, fn)
}

func records(db *bbolt.DB, from uint64, fn func(StoredRecord) error) error {
	return leaves(db, from, true, func(seq uint64, leaf, req, resp []byte) error {
		return fn(StoredRecord{Seq: seq, Leaf: leaf, Request: splitSealed(req), Response: splitSealed(resp)})
	})
}

func splitSealed(v []byte) *SealedBody {
	if len(v) < saltSize {
		return nil
	}
	return &SealedBody{Salt: v[:saltSize:saltSize], Body: v[saltSize:]}
}

// Size returns the number of durable records in the log (the sequence
// number the next record gets).
func (s *Store) Size() (uint64, error) {
	if err := s.flush(); err != nil {
		return 0, err
	}
	return size(s.db)
}

// Size is [Store.Size] on a log opened read-only.
func (r *Reader) Size() (uint64, error) { return size(r.db) }

func size(db *bbolt.DB) (uint64, error) {
	var n uint64
	err := db.View(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketLeaves).Cursor().Last()
		if len(k) == 8 {
			n = binary.BigEndian.Uint64(k) + 1
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: size: %w", err)
	}
	return n, nil
}

// Checkpoints calls fn with each stored signed checkpoint whose tree size
// is above after, in ascending size, outside any transaction.
func (s *Store) Checkpoints(after uint64, fn func(size uint64, signed []byte) error) error {
	return checkpoints(s.db, after, fn)
}

// Checkpoints is [Store.Checkpoints] on a log opened read-only.
func (r *Reader) Checkpoints(after uint64, fn func(size uint64, signed []byte) error) error {
	return checkpoints(r.db, after, fn)
}

// Origin returns the log's origin as its meta bucket names it ("" if
// unreadable).
func (r *Reader) Origin() string { return string(r.meta(metaOrigin)) }

// PublicKey returns the checkpoint signer's key as the meta bucket names
// it ("" if unreadable).
func (r *Reader) PublicKey() string { return string(r.meta(metaPublicKey)) }

func (r *Reader) meta(key []byte) []byte {
	var v []byte
	r.db.View(func(tx *bbolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucketMeta).Get(key))
		return nil
	})
	return v
}

func checkpoints(db *bbolt.DB, after uint64, fn func(size uint64, signed []byte) error) error {
	type cp struct {
		size uint64
		msg  []byte
	}
	var cps []cp
	err := db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketCheckpoints).Cursor()
		for k, v := c.Seek(u64key(after + 1)); k != nil; k, v = c.Next() {
			if len(k) == 8 {
				cps = append(cps, cp{binary.BigEndian.Uint64(k), bytes.Clone(v)})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: checkpoints: %w", err)
	}
	for _, c := range cps {
		if err := fn(c.size, c.msg); err != nil {
			return err
		}
	}
	return nil
}

// LeafCursor walks a log's stored leaves in ascending order of their keys,
// as a bbolt cursor does: First starts over, Next moves on, and a nil key
// ends the walk. A key is BE64 of the sequence number the leaf is stored
// under.
type LeafCursor interface {
	First() (key, leaf []byte)
	Next() (key, leaf []byte)
}

// StoredLog is a copy of a log's stored bytes kept outside its bbolt file
// (for example shipped to a database), as [VerifyStored] reads it.
type StoredLog interface {
	// Origin and PublicKey name the log when its genesis record does not
	// (it is missing or does not decode): the caller's pinned or
	// first-seen values, never the copy's own say.
	Origin() string
	PublicKey() string
	// Cursor returns a new cursor over the leaves.
	Cursor() LeafCursor
	// Body returns record seq's stored request (response false) or
	// response body, nil if the copy has none.
	Body(seq uint64, response bool) *SealedBody
	// LeafHash returns the leaf hash the copy keeps beside leaf seq (a
	// hint, rewritable like the leaf), nil if none.
	LeafHash(seq uint64) []byte
	// Checkpoints returns the stored signed checkpoints by tree size.
	Checkpoints() (map[uint64][]byte, error)
	// Err returns the first error the cursor or a lookup met.
	Err() error
}

// VerifyStored verifies a copy of a log exactly as [Reader.Verify]
// verifies the bbolt file: it hashes every stored leaf, checks sequence
// numbers, chain links and body commitments, rebuilds the Merkle tree, and
// checks every stored checkpoint's signature and root, and every external
// one in opts. The copy keeps no head; its newest records are vouched for
// by the leaf hashes it keeps and by the checkpoints. An error means the
// copy could not be verified at all (including an error from l.Err).
func VerifyStored(l StoredLog, opts VerifyOptions) (*Report, error) {
	src := &logSource{
		cursor:    func() leafCursor { return l.Cursor() },
		origin:    l.Origin(),
		publicKey: l.PublicKey(),
		leafHash:  l.LeafHash,
		body: func(seq uint64, kind byte) []byte {
			b := l.Body(seq, kind == bodyResponse)
			if b == nil {
				return nil
			}
			return append(append(make([]byte, 0, len(b.Salt)+len(b.Body)), b.Salt...), b.Body...)
		},
	}
	if k, leaf := l.Cursor().First(); len(k) == 8 && binary.BigEndian.Uint64(k) == 0 {
		src.genesis = leaf
	}
	cps, err := l.Checkpoints()
	if err != nil {
		return nil, fmt.Errorf("store: verify: checkpoints: %w", err)
	}
	for size, msg := range cps {
		src.checkpoints = append(src.checkpoints, storedCP{size, msg})
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("store: verify: %w", err)
	}
	rep, err := verifySource(src, opts)
	if err == nil {
		err = l.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("store: verify: %w", err)
	}
	return rep, nil
}
