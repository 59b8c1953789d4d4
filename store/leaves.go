package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// Bounds of one read transaction of Leaves.
const (
	leavesChunk      = 1024    // records
	leavesChunkBytes = 8 << 20 // leaf and body bytes
)

// Leaves calls fn with the stored bytes of each record from sequence
// number from to the end of the log, in order: the leaf exactly as stored
// and hashed (tlog.RecordHash(leaf) is its leaf hash), and its request and
// response bodies (nil if none or pruned). fn may keep the slices. An
// error from fn stops the walk and is returned.
//
// Leaves checks the chain as it goes: the sequence numbers are contiguous,
// each leaf names its own, and each leaf's prev is the hash of the leaf
// before it (for from > 0, of leaf from-1). At a break it returns an error
// before calling fn for the leaf that does not chain. The newest leaf has
// no successor to vouch for it; Verify and signed checkpoints do.
//
// Leaves reads in short read transactions (up to 1024 records or 8 MiB)
// and calls fn outside them, so a slow consumer holds no transaction open:
// bbolt's writer waits for open readers when it grows the file.
func (r *Reader) Leaves(from uint64, fn func(seq uint64, leaf, req, resp []byte) error) error {
	return leaves(r.db, from, false, fn)
}

// Leaves is [Reader.Leaves] on the live log.
func (s *Store) Leaves(from uint64, fn func(seq uint64, leaf, req, resp []byte) error) error {
	return leaves(s.db, from, false, fn)
}

// storedLeaf is a copy of one record's stored bytes.
type storedLeaf struct {
	seq             uint64
	leaf, req, resp []byte
}

// genesisPrev is the prev of record 0.
var genesisPrev = strings.Repeat("0", 2*tlog.HashSize)

// leaves walks the log for Leaves (sealed false: bodies without their
// salts) and Records (sealed: bodies as stored, salt ‖ body).
func leaves(db *bbolt.DB, from uint64, sealed bool, fn func(seq uint64, leaf, req, resp []byte) error) error {
	next := from
	var prev string // hex hash of leaf next-1; "" if unknown (missing)
	if from == 0 {
		prev = genesisPrev
	}
	first := true
	for {
		var chunk []storedLeaf
		gap := false
		err := db.View(func(tx *bbolt.Tx) error {
			lb, bodies := tx.Bucket(bucketLeaves), tx.Bucket(bucketBodies)
			if first && from > 0 {
				if pl := lb.Get(u64key(from - 1)); pl != nil {
					h := tlog.RecordHash(pl)
					prev = hex.EncodeToString(h[:])
				}
			}
			size := 0
			c := lb.Cursor()
			for k, v := c.Seek(u64key(next)); k != nil; k, v = c.Next() {
				if len(k) != 8 || binary.BigEndian.Uint64(k) != next {
					// Hand out what precedes the gap first.
					gap = true
					break
				}
				sl := storedLeaf{seq: next, leaf: bytes.Clone(v)}
				sl.req, sl.resp = bodies.Get(bodyKey(next, bodyRequest)), bodies.Get(bodyKey(next, bodyResponse))
				if sealed {
					sl.req, sl.resp = bytes.Clone(sl.req), bytes.Clone(sl.resp)
				} else {
					sl.req, sl.resp = unseal(sl.req), unseal(sl.resp)
				}
				chunk = append(chunk, sl)
				next++
				if size += len(sl.leaf) + len(sl.req) + len(sl.resp); len(chunk) >= leavesChunk || size >= leavesChunkBytes {
					break
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: leaves: %w", err)
		}
		first = false
		if len(chunk) == 0 && !gap {
			return nil
		}
		for _, sl := range chunk {
			h, err := readHeader(sl.leaf)
			switch {
			case err != nil:
				return fmt.Errorf("store: leaves: record %d does not decode: the log is damaged or was altered (run sessctl verify): %w", sl.seq, err)
			case h.Seq != sl.seq:
				return fmt.Errorf("store: leaves: record %d is stored as record %d: the log is damaged or was altered (run sessctl verify)", h.Seq, sl.seq)
			case prev == "":
				return fmt.Errorf("store: leaves: record %d is missing: the log is damaged or was altered (run sessctl verify)", sl.seq-1)
			case h.Prev != prev:
				return fmt.Errorf("store: leaves: record %d does not name the hash of record %d as its prev: the log is damaged or was altered (run sessctl verify)", sl.seq, sl.seq-1)
			}
			lh := tlog.RecordHash(sl.leaf)
			prev = hex.EncodeToString(lh[:])
			if err := fn(sl.seq, sl.leaf, sl.req, sl.resp); err != nil {
				return err
			}
		}
		if gap {
			return fmt.Errorf("store: leaves: record %d is missing: the log is damaged or was altered (run sessctl verify)", next)
		}
	}
}
