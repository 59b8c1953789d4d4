package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Usage is the token usage an upstream reported for one exchange, as it
// reported it: sessctl never recomputes a count (Total in particular is
// the provider's, not a sum). A field the provider did not report is 0.
type Usage struct {
	// Input counts prompt tokens (chat and embeddings: prompt_tokens;
	// Responses: input_tokens).
	Input int64 `json:"input"`
	// CachedInput is the part of Input served from the prompt cache.
	CachedInput int64 `json:"cached_input,omitempty"`
	// Output counts generated tokens (completion_tokens, output_tokens).
	Output int64 `json:"output"`
	// Reasoning is the part of Output spent on reasoning.
	Reasoning int64 `json:"reasoning,omitempty"`
	// Total is total_tokens as reported.
	Total int64 `json:"total"`
	// Incomplete marks usage known only in part: the answer broke off
	// (client gone, upstream error, blocked) before the provider reported
	// its final usage; the counts are those known at that point.
	Incomplete bool `json:"incomplete,omitempty"`
}

// Tokens returns the tokens a budget counts for u: Total when reported,
// else Input + Output.
func (u *Usage) Tokens() int64 {
	if u == nil {
		return 0
	}
	if u.Total > 0 {
		return u.Total
	}
	return u.Input + u.Output
}

// Charge is an amount spent against a budget counter, written with the
// record that carries it (Record.Charges) in the same transaction.
type Charge struct {
	// Key names the counter (the budget package builds it).
	Key string
	// Window is the start of the counting window.
	Window time.Time
	// Tokens and Requests are added to the window's counts.
	Tokens, Requests int64
}

// Spent is what a budget counter holds for one window.
type Spent struct {
	Tokens, Requests int64
}

// The budgets bucket holds one entry per budget counter and window:
//
//	key ‖ 0x00 ‖ BE64(window start, Unix seconds) → BE64(tokens) ‖ BE64(requests)
//
// Charges are added in the append transaction of the record carrying
// them, so a counter is exactly as durable as the records it counts. An
// entry is deleted when a later window of the same key is charged.
var bucketBudgets = []byte("budgets")

// checkCharges refuses charges the budgets bucket cannot hold.
func checkCharges(cs []Charge) error {
	for _, c := range cs {
		if c.Key == "" || strings.IndexByte(c.Key, 0) >= 0 || len(c.Key) > 1024 {
			return fmt.Errorf("store: append: bad budget key %q", c.Key)
		}
	}
	return nil
}

// budgetKey is the bucket key of counter key in the window starting at w.
func budgetKey(key string, w time.Time) []byte {
	b := make([]byte, 0, len(key)+9)
	b = append(b, key...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, uint64(w.Unix()))
}

// putCharges adds the charges to the budgets bucket, dropping the
// counters' older windows.
func putCharges(tx *bbolt.Tx, charges []Charge) error {
	if len(charges) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketBudgets)
	if err != nil {
		return err
	}
	for _, c := range charges {
		k := budgetKey(c.Key, c.Window)
		prefix := k[:len(c.Key)+1]
		cur := b.Cursor()
		for ck, _ := cur.Seek(prefix); ck != nil && bytes.HasPrefix(ck, prefix) && bytes.Compare(ck, k) < 0; ck, _ = cur.Seek(prefix) {
			if err := cur.Delete(); err != nil {
				return err
			}
		}
		var s Spent
		if v := b.Get(k); len(v) == 16 {
			s = Spent{int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))}
		}
		s.Tokens += c.Tokens
		s.Requests += c.Requests
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(s.Tokens))
		if err := b.Put(k, binary.BigEndian.AppendUint64(v, uint64(s.Requests))); err != nil {
			return err
		}
	}
	return nil
}

// Budgets calls fn with every budget counter's latest window and what it
// holds, so that a budget meter starts where the last run stopped.
func (s *Store) Budgets(fn func(key string, window time.Time, spent Spent) error) error {
	if err := s.flush(); err != nil {
		return err
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketBudgets)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			i := len(k) - 9
			if i < 0 || k[i] != 0 || len(v) != 16 {
				return errors.New("store: budgets: malformed entry")
			}
			w := time.Unix(int64(binary.BigEndian.Uint64(k[i+1:])), 0).UTC()
			return fn(string(k[:i]), w, Spent{int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))})
		})
	})
}
