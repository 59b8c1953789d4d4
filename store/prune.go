package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"go.etcd.io/bbolt"
)

// PruneResult says what Prune removed.
type PruneResult struct {
	From, To uint64 // inclusive range of records whose bodies were deleted
	Bodies   int    // bodies deleted
	Seq      uint64 // the prune record
	Pruned   bool   // false if there was nothing to prune
}

// Prune deletes the bodies and salts of the oldest records that ended
// before the given time, and appends a prune record naming the range
// (extra "from", "to", "before"). Leaves and tree are kept, so the chain,
// the checkpoints and proofs stay valid, and Verify reports the deleted
// bodies as pruned. Records are considered in sequence order; pruning
// stops at the first record that ended at or after before.
//
// bbolt reuses the freed pages but does not shrink the file; see FORMAT.md
// for compaction.
func (s *Store) Prune(ctx context.Context, before time.Time) (PruneResult, error) {
	return s.PruneBelow(ctx, before, math.MaxUint64)
}

// PruneBelow is [Store.Prune] that also keeps the bodies of records limit
// and later, whatever their age: pruning stops at record limit. A shipper
// passes the number of records it has copied elsewhere, so that no body
// is deleted before it has been shipped.
func (s *Store) PruneBelow(ctx context.Context, before time.Time, limit uint64) (PruneResult, error) {
	var res PruneResult
	j := &job{done: make(chan struct{})}
	j.fn = func(tx *bbolt.Tx, st *chainState) error {
		res = PruneResult{}
		meta := tx.Bucket(bucketMeta)
		from := uint64(1)
		if v := meta.Get(metaPrunedTo); len(v) == 8 {
			from = binary.BigEndian.Uint64(v)
		}
		leaves, bodies := tx.Bucket(bucketLeaves), tx.Bucket(bucketBodies)
		to, any := uint64(0), false
		for seq := from; seq < min(st.size, limit); seq++ {
			if s.opts.Progress != nil && (seq-from)%progressEvery == 0 {
				s.opts.Progress("pruning", seq, st.size)
			}
			leaf := leaves.Get(u64key(seq))
			if leaf == nil {
				return fmt.Errorf("record %d missing", seq)
			}
			rec, err := DecodeLeaf(leaf)
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			if !rec.End.Before(before) {
				break
			}
			for _, k := range []byte{bodyRequest, bodyResponse} {
				key := bodyKey(seq, k)
				if bodies.Get(key) != nil {
					if err := bodies.Delete(key); err != nil {
						return err
					}
					res.Bodies++
				}
			}
			to, any = seq, true
		}
		if s.opts.Progress != nil {
			s.opts.Progress("pruning", st.size, st.size)
		}
		if !any {
			return nil
		}
		if err := meta.Put(metaPrunedTo, u64key(to+1)); err != nil {
			return err
		}
		now := time.Now().UTC()
		pj, err := newJob(&Record{
			Kind:  KindPrune,
			Start: now,
			End:   now,
			Extra: map[string]string{
				"from":   strconv.FormatUint(from, 10),
				"to":     strconv.FormatUint(to, 10),
				"before": before.UTC().Format(time.RFC3339Nano),
				"bodies": strconv.Itoa(res.Bodies),
			},
		})
		if err != nil {
			return err
		}
		assign(st, pj)
		if err := s.applyTx(tx, st, pj); err != nil {
			return err
		}
		res.From, res.To, res.Seq, res.Pruned = from, to, pj.rec.Seq, true
		return nil
	}
	if err := s.submit(ctx, j); err != nil {
		return PruneResult{}, fmt.Errorf("store: prune: %w", err)
	}
	if res.Pruned {
		s.log.Info("pruned bodies", "from", res.From, "to", res.To, "bodies", res.Bodies, "seq", res.Seq)
	}
	return res, nil
}
