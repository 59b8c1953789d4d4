package store

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// proofHeader starts every proof bundle.
const proofHeader = "sessctl/proof/v1"

// Prove returns a self-contained proof bundle for record seq: the leaf
// bytes, the inclusion proof, and the newest signed checkpoint (which must
// cover seq). FORMAT.md describes the bundle.
func (r *Reader) Prove(seq uint64) ([]byte, error) { return prove(r.db, seq) }

// Prove is [Reader.Prove] on the live log. A record newer than the last
// checkpoint cannot be proved until the next checkpoint is written.
func (s *Store) Prove(seq uint64) ([]byte, error) { return prove(s.db, seq) }

func prove(db *bbolt.DB, seq uint64) ([]byte, error) {
	return writeProof(db, seq, func(_ *bbolt.Tx, _, v []byte) []byte { return v }, func(out *bytes.Buffer, in *inclusion) {
		fmt.Fprintf(out, "%s\nkey %s\nindex %d\nleaf %s\n", proofHeader, in.key, seq, base64.StdEncoding.EncodeToString(in.leaf))
		for _, h := range in.proof {
			fmt.Fprintf(out, "hash %s\n", h)
		}
		out.WriteString("checkpoint\n")
		out.Write(in.note)
	})
}

// writeProof proves record seq in the newest checkpoint (see proveLatest)
// and returns what write makes of that proof.
func writeProof(db *bbolt.DB, seq uint64, note func(tx *bbolt.Tx, k, v []byte) []byte, write func(*bytes.Buffer, *inclusion)) ([]byte, error) {
	var out bytes.Buffer
	err := db.View(func(tx *bbolt.Tx) error {
		in, err := proveLatest(tx, seq, note)
		if err != nil {
			return err
		}
		write(&out, in)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: prove %d: %w", seq, err)
	}
	return out.Bytes(), nil
}

// inclusion is what a proof of one record in the newest checkpoint is made
// of.
type inclusion struct {
	key   string // the log's verifier key
	note  []byte // the newest checkpoint note
	leaf  []byte
	proof tlog.RecordProof
}

// proveLatest reads, in tx, the newest checkpoint (its note is what note
// returns for tx and the checkpoint bucket's last key and value), checks
// that it covers record seq, and returns seq's leaf and its inclusion proof
// in that checkpoint's tree.
func proveLatest(tx *bbolt.Tx, seq uint64, note func(tx *bbolt.Tx, k, v []byte) []byte) (*inclusion, error) {
	vkey := string(tx.Bucket(bucketMeta).Get(metaPublicKey))
	k, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
	if k == nil {
		return nil, errors.New("the log has no checkpoint")
	}
	msg := note(tx, k, v)
	c, err := OpenCheckpoint(msg, vkey)
	if err != nil {
		return nil, fmt.Errorf("latest checkpoint: %w", err)
	}
	if uint64(c.Size) <= seq {
		return nil, fmt.Errorf("record %d is not yet covered by a signed checkpoint (the latest covers %d records); retry after the next checkpoint", seq, c.Size)
	}
	leaf := tx.Bucket(bucketLeaves).Get(u64key(seq))
	if leaf == nil {
		return nil, fmt.Errorf("record %d: %w", seq, ErrNotFound)
	}
	p, err := tlog.ProveRecord(c.Size, int64(seq), bucketHashReader{tx.Bucket(bucketTree)})
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return &inclusion{key: vkey, note: msg, leaf: leaf, proof: p}, nil
}

// ProofResult is what a verified proof bundle establishes.
type ProofResult struct {
	Seq        uint64
	Record     *Record
	Leaf       []byte
	Checkpoint Checkpoint
	PublicKey  string
	// KeyPinned is false when the key came from the bundle itself: the
	// proof then shows consistency with the checkpoint, not who signed it.
	KeyPinned bool
}

// VerifyProof checks a proof bundle offline: the checkpoint's signature
// (by pubkey, or by the key the bundle names if pubkey is empty), and
// that the leaf is record Index of the tree the checkpoint signs.
func VerifyProof(bundle []byte, pubkey string) (*ProofResult, error) {
	res, err := verifyProof(bundle, pubkey)
	if err != nil {
		return nil, fmt.Errorf("store: proof: %w", err)
	}
	return res, nil
}

func verifyProof(bundle []byte, pubkey string) (*ProofResult, error) {
	i := bytes.Index(bundle, []byte("\ncheckpoint\n"))
	if !bytes.HasPrefix(bundle, []byte(proofHeader+"\n")) || i < 0 {
		return nil, errors.New("not a sessctl proof bundle")
	}
	head, cp := bundle[:i+1], bundle[i+len("\ncheckpoint\n"):]
	res := &ProofResult{}
	var proof tlog.RecordProof
	var haveIndex, haveLeaf bool
	sc := bufio.NewScanner(bytes.NewReader(head))
	sc.Buffer(nil, 4*maxLeafSize/3+64)
	sc.Scan() // header
	for sc.Scan() {
		word, val, _ := strings.Cut(sc.Text(), " ")
		switch word {
		case "key":
			res.PublicKey = val
		case "index":
			n, err := strconv.ParseUint(val, 10, 63)
			if err != nil {
				return nil, fmt.Errorf("bad index %q", val)
			}
			res.Seq, haveIndex = n, true
		case "leaf":
			b, err := base64.StdEncoding.Strict().DecodeString(val)
			if err != nil {
				return nil, errors.New("bad leaf encoding")
			}
			res.Leaf, haveLeaf = b, true
		case "hash":
			h, err := tlog.ParseHash(val)
			if err != nil {
				return nil, fmt.Errorf("bad proof hash %q", val)
			}
			if len(proof) >= 64 {
				return nil, errors.New("too many proof hashes")
			}
			proof = append(proof, h)
		default:
			return nil, fmt.Errorf("unexpected line %q", word)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !haveIndex || !haveLeaf || res.PublicKey == "" {
		return nil, errors.New("bundle lacks its key, index or leaf")
	}
	if pubkey != "" {
		if pubkey != res.PublicKey {
			return nil, errors.New("the bundle names a different key than the pinned one")
		}
		res.KeyPinned = true
	}
	if err := res.check(cp, res.PublicKey, proof); err != nil {
		return nil, err
	}
	return res, nil
}

// check opens the checkpoint note cp with key, and checks that proof shows
// res.Leaf is record res.Seq of the tree it signs and that the leaf says so
// too. It fills in res.Checkpoint and res.Record.
func (res *ProofResult) check(cp []byte, key string, proof tlog.RecordProof) error {
	c, err := OpenCheckpoint(cp, key)
	if err != nil {
		return err
	}
	res.Checkpoint = c
	if uint64(c.Size) <= res.Seq {
		return fmt.Errorf("checkpoint of %d records does not cover record %d", c.Size, res.Seq)
	}
	if err := tlog.CheckRecord(proof, c.Size, c.Root, int64(res.Seq), tlog.RecordHash(res.Leaf)); err != nil {
		return fmt.Errorf("record %d is not in the signed tree: %w", res.Seq, err)
	}
	rec, err := DecodeLeaf(res.Leaf)
	if err != nil {
		return err
	}
	if rec.Seq != res.Seq {
		return fmt.Errorf("leaf says seq %d, proof is for %d", rec.Seq, res.Seq)
	}
	res.Record = rec
	return nil
}

// ProveConsistency returns a proof that the tree of oldSize records is a
// prefix of the tree of newSize records (check it with tlog.CheckTree).
func (r *Reader) ProveConsistency(oldSize, newSize int64) (tlog.TreeProof, error) {
	return proveConsistency(r.db, oldSize, newSize)
}

func proveConsistency(db *bbolt.DB, oldSize, newSize int64) (tlog.TreeProof, error) {
	var p tlog.TreeProof
	err := db.View(func(tx *bbolt.Tx) error {
		var err error
		p, err = tlog.ProveTree(newSize, oldSize, bucketHashReader{tx.Bucket(bucketTree)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: consistency proof %d..%d: %w", oldSize, newSize, err)
	}
	return p, nil
}
