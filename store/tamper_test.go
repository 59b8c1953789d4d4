package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// buildLog writes a closed log of genesis + n exchanges + shutdown with a
// checkpoint every 5 records (at sizes 1, 6, 11, 16, 21, n+2), copying checkpoints to a file. It returns
// the database path and the checkpoint file.
func buildLog(t *testing.T, n int) (db, cpFile string) {
	t.Helper()
	dir := t.TempDir()
	db, cpFile = filepath.Join(dir, "sessions.db"), filepath.Join(dir, "checkpoints.txt")
	s, err := Open(db, Options{
		SigningKeyFile:  filepath.Join(dir, "signing.key"),
		CheckpointEvery: 5,
		CheckpointFile:  cpFile,
		Logger:          quietLogger(),
		NoSync:          true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		// One append at a time so checkpoints land every 5 records.
		if _, err := s.Append(context.Background(), exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return db, cpFile
}

func rawUpdate(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func leafAt(tx *bbolt.Tx, seq uint64) []byte {
	return bytes.Clone(tx.Bucket(bucketLeaves).Get(u64key(seq)))
}

func putLeaf(tx *bbolt.Tx, seq uint64, leaf []byte) error {
	return tx.Bucket(bucketLeaves).Put(u64key(seq), leaf)
}

func lastSeq(tx *bbolt.Tx) uint64 {
	k, _ := tx.Bucket(bucketLeaves).Cursor().Last()
	return u64(k)
}

func u64(k []byte) uint64 {
	var n uint64
	for _, b := range k {
		n = n<<8 | uint64(b)
	}
	return n
}

// rechain rewrites every leaf from seq on so that its prev names the
// (possibly changed) previous leaf, then rebuilds the tree and head: what
// an attacker with write access but no signing key can do.
func rechain(tx *bbolt.Tx, from uint64) error {
	last := lastSeq(tx)
	prev := tlog.RecordHash(leafAt(tx, from-1))
	for seq := from; seq <= last; seq++ {
		r, err := DecodeLeaf(leafAt(tx, seq))
		if err != nil {
			return err
		}
		r.Seq, r.Prev = seq, hex.EncodeToString(prev[:])
		leaf, err := EncodeLeaf(r)
		if err != nil {
			return err
		}
		if err := putLeaf(tx, seq, leaf); err != nil {
			return err
		}
		prev = tlog.RecordHash(leaf)
	}
	return rebuildTree(tx)
}

func rebuildTree(tx *bbolt.Tx) error {
	if err := tx.DeleteBucket(bucketTree); err != nil {
		return err
	}
	tree, err := tx.CreateBucket(bucketTree)
	if err != nil {
		return err
	}
	last := lastSeq(tx)
	var head tlog.Hash
	for seq := uint64(0); seq <= last; seq++ {
		leaf := leafAt(tx, seq)
		hs, err := tlog.StoredHashes(int64(seq), leaf, bucketHashReader{tree})
		if err != nil {
			return err
		}
		for i, h := range hs {
			if err := tree.Put(u64key(uint64(tlog.StoredHashIndex(0, int64(seq))+int64(i))), bytes.Clone(h[:])); err != nil {
				return err
			}
		}
		head = tlog.RecordHash(leaf)
	}
	return putHead(tx, chainState{size: last + 1, head: head})
}

func TestTamper(t *testing.T) {
	const n = 20 // records 1..20 are exchanges, 21 is shutdown
	tests := []struct {
		name     string
		tamper   func(tx *bbolt.Tx) error
		external bool     // verify with the external checkpoint file
		want     []string // expected problems; the first is the first line
	}{
		{
			name: "modify a leaf",
			tamper: func(tx *bbolt.Tx) error {
				return putLeaf(tx, 7, bytes.Replace(leafAt(tx, 7), []byte("/v1/chat/completions"), []byte("/v1/chat/complet1ons"), 1))
			},
			want: []string{"record 7: modified"},
		},
		{
			name: "break a leaf's encoding",
			tamper: func(tx *bbolt.Tx) error {
				l := leafAt(tx, 7)
				l[len(LeafPrefix)] = '['
				return putLeaf(tx, 7, l)
			},
			want: []string{"record 7: modified"},
		},
		{
			name: "modify the last leaf",
			tamper: func(tx *bbolt.Tx) error {
				return putLeaf(tx, n+1, bytes.Replace(leafAt(tx, n+1), []byte(`"shutdown"`), []byte(`"shutdowm"`), 1))
			},
			want: []string{fmt.Sprintf("record %d: modified", n+1)},
		},
		{
			name: "modify a body",
			tamper: func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketBodies)
				v := bytes.Clone(b.Get(bodyKey(5, bodyRequest)))
				v[len(v)-3] ^= 1
				return b.Put(bodyKey(5, bodyRequest), v)
			},
			want: []string{"record 5: body modified"},
		},
		{
			name: "modify a salt",
			tamper: func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketBodies)
				v := bytes.Clone(b.Get(bodyKey(6, bodyResponse)))
				v[0] ^= 1
				return b.Put(bodyKey(6, bodyResponse), v)
			},
			want: []string{"record 6: body modified"},
		},
		{
			name:   "delete a body",
			tamper: func(tx *bbolt.Tx) error { return tx.Bucket(bucketBodies).Delete(bodyKey(5, bodyResponse)) },
			want:   []string{"record 5: body missing"},
		},
		{
			name:   "delete from the middle",
			tamper: func(tx *bbolt.Tx) error { return tx.Bucket(bucketLeaves).Delete(u64key(9)) },
			want:   []string{"record 9: missing"},
		},
		{
			name: "delete from the middle and renumber",
			tamper: func(tx *bbolt.Tx) error {
				last := lastSeq(tx)
				for seq := uint64(9); seq < last; seq++ {
					if err := putLeaf(tx, seq, leafAt(tx, seq+1)); err != nil {
						return err
					}
				}
				return tx.Bucket(bucketLeaves).Delete(u64key(last))
			},
			want: []string{"record 9: missing"},
		},
		{
			name: "delete the tail, with the external checkpoint",
			tamper: func(tx *bbolt.Tx) error {
				return deleteTail(tx, 15)
			},
			external: true,
			want:     []string{fmt.Sprintf("record 15: truncated (checkpoint says %d, log has 15)", n+2)},
		},
		{
			name: "swap two records",
			tamper: func(tx *bbolt.Tx) error {
				a, b := leafAt(tx, 4), leafAt(tx, 11)
				if err := putLeaf(tx, 4, b); err != nil {
					return err
				}
				return putLeaf(tx, 11, a)
			},
			want: []string{"record 4: reordered", "record 11: reordered"},
		},
		{
			name: "swap two neighbours",
			tamper: func(tx *bbolt.Tx) error {
				a, b := leafAt(tx, 4), leafAt(tx, 5)
				if err := putLeaf(tx, 4, b); err != nil {
					return err
				}
				return putLeaf(tx, 5, a)
			},
			want: []string{"record 4: reordered", "record 5: reordered"},
		},
		{
			name: "insert a forged record",
			tamper: func(tx *bbolt.Tx) error {
				last := lastSeq(tx)
				for seq := last; seq >= 6; seq-- {
					if err := putLeaf(tx, seq+1, leafAt(tx, seq)); err != nil {
						return err
					}
				}
				forged := exchange(100)
				forged.Seq = 6
				prev := tlog.RecordHash(leafAt(tx, 5))
				forged.Prev = hex.EncodeToString(prev[:])
				leaf, err := EncodeLeaf(forged)
				if err != nil {
					return err
				}
				return putLeaf(tx, 6, leaf)
			},
			want: []string{"record 6: inserted"},
		},
		{
			name: "append a forged record at the end",
			tamper: func(tx *bbolt.Tx) error {
				last := lastSeq(tx)
				forged := exchange(100)
				forged.Seq = last + 1
				prev := tlog.RecordHash(leafAt(tx, last))
				forged.Prev = hex.EncodeToString(prev[:])
				leaf, err := EncodeLeaf(forged)
				if err != nil {
					return err
				}
				return putLeaf(tx, last+1, leaf)
			},
			want: []string{fmt.Sprintf("record %d: inserted", n+2)},
		},
		{
			name: "append a forged record with a made-up prev",
			tamper: func(tx *bbolt.Tx) error {
				last := lastSeq(tx)
				forged := exchange(100)
				forged.Seq = last + 1
				forged.Prev = strings.Repeat("ab", 32)
				leaf, err := EncodeLeaf(forged)
				if err != nil {
					return err
				}
				return putLeaf(tx, last+1, leaf)
			},
			want: []string{fmt.Sprintf("record %d: inserted", n+2)},
		},
		{
			name: "rewrite history (re-chained, tree rebuilt)",
			tamper: func(tx *bbolt.Tx) error {
				if err := putLeaf(tx, 7, bytes.Replace(leafAt(tx, 7), []byte(`"status":200`), []byte(`"status":201`), 1)); err != nil {
					return err
				}
				return rechain(tx, 8)
			},
			want: []string{"record 10: checkpoint mismatch"},
		},
		{
			name: "rewrite history, drop the stored checkpoints; external copy",
			tamper: func(tx *bbolt.Tx) error {
				if err := putLeaf(tx, 7, bytes.Replace(leafAt(tx, 7), []byte(`"status":200`), []byte(`"status":201`), 1)); err != nil {
					return err
				}
				if err := rechain(tx, 8); err != nil {
					return err
				}
				return dropCheckpoints(tx, 0)
			},
			external: true,
			want:     []string{"record 10: forked"},
		},
		{
			name: "replace a checkpoint with another genuine one",
			tamper: func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketCheckpoints)
				return b.Put(u64key(11), bytes.Clone(b.Get(u64key(16))))
			},
			want: []string{"record 10: checkpoint mismatch"},
		},
		{
			name: "edit a checkpoint's root",
			tamper: func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketCheckpoints)
				msg := bytes.Clone(b.Get(u64key(11)))
				c, err := ParseCheckpoint(noteText(msg))
				if err != nil {
					return err
				}
				old := c.Root.String()
				c.Root[0] ^= 1
				return b.Put(u64key(11), bytes.Replace(msg, []byte(old), []byte(c.Root.String()), 1))
			},
			want: []string{"record 10: bad checkpoint signature"},
		},
		{
			name: "forge a signature (same key name and id, wrong bytes)",
			tamper: func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketCheckpoints)
				msg := bytes.Clone(b.Get(u64key(16)))
				i := bytes.LastIndexByte(msg[:len(msg)-1], ' ')
				sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(msg[i+1:])))
				if err != nil {
					return err
				}
				rand.Read(sig[4:])
				forged := append(msg[:i+1], base64.StdEncoding.EncodeToString(sig)+"\n"...)
				return b.Put(u64key(16), forged)
			},
			want: []string{"record 15: bad checkpoint signature"},
		},
		{
			name: "sign with another key of the same name",
			tamper: func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketCheckpoints)
				origin := string(tx.Bucket(bucketMeta).Get(metaOrigin))
				skey, _, err := note.GenerateKey(rand.Reader, origin)
				if err != nil {
					return err
				}
				signer, err := note.NewSigner(skey)
				if err != nil {
					return err
				}
				c, err := ParseCheckpoint(noteText(b.Get(u64key(16))))
				if err != nil {
					return err
				}
				c.Root[0] ^= 1
				msg, err := signCheckpoint(c, signer)
				if err != nil {
					return err
				}
				return b.Put(u64key(16), msg)
			},
			want: []string{"record 15: bad checkpoint signature"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, cpFile := buildLog(t, n)
			var opts VerifyOptions
			if tt.external {
				data, err := os.ReadFile(cpFile)
				if err != nil {
					t.Fatal(err)
				}
				opts.Checkpoints = SplitNotes(data)
			}
			if rep := mustVerify(t, db, opts); !rep.OK() {
				t.Fatalf("untouched log: %v", rep.Problems)
			}
			rawUpdate(t, db, tt.tamper)
			rep := mustVerify(t, db, opts)
			if rep.OK() {
				t.Fatalf("tampering not detected")
			}
			var got []string
			for _, p := range rep.Problems {
				got = append(got, p.String())
			}
			if got[0] != tt.want[0] {
				t.Errorf("first problem %q, want %q (all: %q)", got[0], tt.want[0], got)
			}
			for _, w := range tt.want {
				if !strings.Contains(strings.Join(got, "\n")+"\n", w+"\n") {
					t.Errorf("missing %q in %q", w, got)
				}
			}
			t.Logf("problems: %q", got)
		})
	}
}

func deleteTail(tx *bbolt.Tx, from uint64) error {
	last := lastSeq(tx)
	for seq := from; seq <= last; seq++ {
		if err := tx.Bucket(bucketLeaves).Delete(u64key(seq)); err != nil {
			return err
		}
	}
	if err := dropCheckpoints(tx, from); err != nil {
		return err
	}
	return rebuildTree(tx)
}

// dropCheckpoints deletes stored checkpoints of more than keep records.
func dropCheckpoints(tx *bbolt.Tx, keep uint64) error {
	b := tx.Bucket(bucketCheckpoints)
	var del [][]byte
	b.ForEach(func(k, _ []byte) error {
		if u64(k) > keep {
			del = append(del, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range del {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// A careful attacker who deletes the tail, the stored checkpoints past it
// and fixes the tree and head leaves a log that verifies on its own: only
// a checkpoint kept elsewhere catches it. This test pins that limit.
func TestTruncationNeedsExternalCheckpoint(t *testing.T) {
	db, cpFile := buildLog(t, 20)
	rawUpdate(t, db, func(tx *bbolt.Tx) error { return deleteTail(tx, 15) })
	if rep := mustVerify(t, db, VerifyOptions{}); !rep.OK() {
		t.Fatalf("expected the truncated log to verify on its own, got %v", rep.Problems)
	}
	data, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, db, VerifyOptions{Checkpoints: SplitNotes(data)})
	if rep.OK() || rep.Problems[0].Kind != ProblemTruncated || rep.Problems[0].Detail != "checkpoint says 22, log has 15" ||
		rep.Problems[0].String() != "record 15: truncated (checkpoint says 22, log has 15)" {
		t.Fatalf("external checkpoint missed the truncation: %v", rep.Problems)
	}
}
