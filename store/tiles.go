package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxEntrySize is the largest leaf a C2SP tlog-tiles entry bundle can
// hold (a 16-bit length prefix).
const MaxEntrySize = 1<<16 - 1

// ErrEntryTooLarge is returned by EntryBundle for a leaf longer than
// MaxEntrySize.
var ErrEntryTooLarge = errors.New("leaf too large for an entry bundle")

// TileData returns the hashes of Merkle tile t (height 8, level t.L ≥ 0),
// as C2SP tlog-tiles and tlog.ReadTileData define them, from the stored
// tree. The caller checks that the tile lies within a signed tree.
func (s *Store) TileData(t tlog.Tile) ([]byte, error) { return tileData(s.db, t) }

// TileData is [Store.TileData] on a log opened read-only.
func (r *Reader) TileData(t tlog.Tile) ([]byte, error) { return tileData(r.db, t) }

func tileData(db *bbolt.DB, t tlog.Tile) ([]byte, error) {
	if t.H != 8 || t.L < 0 || t.W < 1 || t.W > 256 || t.N < 0 {
		return nil, fmt.Errorf("store: tile %v: not a hash tile of height 8", t)
	}
	var data []byte
	err := db.View(func(tx *bbolt.Tx) error {
		var err error
		data, err = tlog.ReadTileData(t, bucketHashReader{tx.Bucket(bucketTree)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: tile %s: %w", t.Path(), err)
	}
	return data, nil
}

// EntryBundle returns the C2SP tlog-tiles entry bundle of records
// n·256 to n·256+w-1: each leaf (FORMAT.md §2) prefixed by its length as
// 2 bytes big-endian. The RFC 6962 hash of each entry is the record's leaf
// hash. A leaf longer than MaxEntrySize cannot be in a bundle
// (ErrEntryTooLarge).
func (s *Store) EntryBundle(n int64, w int) ([]byte, error) { return entryBundle(s.db, n, w) }

// EntryBundle is [Store.EntryBundle] on a log opened read-only.
func (r *Reader) EntryBundle(n int64, w int) ([]byte, error) { return entryBundle(r.db, n, w) }

func entryBundle(db *bbolt.DB, n int64, w int) ([]byte, error) {
	if n < 0 || w < 1 || w > 256 {
		return nil, fmt.Errorf("store: entry bundle %d width %d: out of range", n, w)
	}
	var out []byte
	err := db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketLeaves).Cursor()
		first := uint64(n) * 256
		k, v := c.Seek(u64key(first))
		for i := 0; i < w; i++ {
			seq := first + uint64(i)
			if k == nil || binary.BigEndian.Uint64(k) != seq {
				return fmt.Errorf("record %d: %w", seq, ErrNotFound)
			}
			if len(v) > MaxEntrySize {
				return fmt.Errorf("record %d: %w (%d bytes, at most %d)", seq, ErrEntryTooLarge, len(v), MaxEntrySize)
			}
			out = binary.BigEndian.AppendUint16(out, uint16(len(v)))
			out = append(out, v...)
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: entry bundle %d: %w", n, err)
	}
	return out, nil
}
