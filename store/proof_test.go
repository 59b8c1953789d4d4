package store

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestProofRoundTrip(t *testing.T) {
	db, _ := buildLog(t, 20)
	r, err := OpenReader(db)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := r.Verify(VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", err, rep)
	}
	for _, seq := range []uint64{0, 1, 7, 16, 21} {
		bundle, err := r.Prove(seq)
		if err != nil {
			t.Fatalf("Prove(%d): %v", seq, err)
		}
		res, err := VerifyProof(bundle, "")
		if err != nil {
			t.Fatalf("VerifyProof(%d): %v\n%s", seq, err, bundle)
		}
		if res.Seq != seq || res.Record.Seq != seq || res.KeyPinned || res.Checkpoint.Size != 22 {
			t.Fatalf("proof %d: %+v", seq, res)
		}
		if res.Checkpoint.Root.String() != rep.Root {
			t.Fatalf("proof root %s, log root %s", res.Checkpoint.Root, rep.Root)
		}
		res, err = VerifyProof(bundle, rep.PublicKey)
		if err != nil || !res.KeyPinned {
			t.Fatalf("pinned: %v %+v", err, res)
		}
	}

	bundle, err := r.Prove(7)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := note.GenerateKey(rand.Reader, "someone-else")
	leafLine := func(b []byte) (string, []byte) {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "leaf "); ok {
				leaf, _ := base64.StdEncoding.DecodeString(v)
				return l, leaf
			}
		}
		t.Fatal("no leaf line")
		return "", nil
	}
	line, leaf := leafLine(bundle)
	modified := bytes.Replace(leaf, []byte(`"status":200`), []byte(`"status":500`), 1)
	tests := []struct {
		name   string
		bundle []byte
		key    string
		want   string
	}{
		{"modified leaf", bytes.Replace(bundle, []byte(line), []byte("leaf "+base64.StdEncoding.EncodeToString(modified)), 1), "", "not in the signed tree"},
		{"wrong pinned key", bundle, otherKey, "different key"},
		{"other index", bytes.Replace(bundle, []byte("index 7\n"), []byte("index 8\n"), 1), "", "not in the signed tree"},
		{"dropped hash", dropLine(bundle, "hash "), "", "not in the signed tree"},
		{"edited checkpoint", bytes.Replace(bundle, []byte("\n22\n"), []byte("\n23\n"), 1), "", "signature"},
		{"not a bundle", []byte("hello\n"), "", "not a sessctl proof bundle"},
		{"garbage line", bytes.Replace(bundle, []byte("index 7\n"), []byte("index 7\nbogus x\n"), 1), "", "unexpected line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyProof(tt.bundle, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("VerifyProof = %v, want error containing %q", err, tt.want)
			}
		})
	}

	// Consistency between two checkpointed sizes.
	roots := map[int64]tlog.Hash{}
	r.db.View(func(tx *bbolt.Tx) error {
		for _, n := range []int64{6, 11, 22} {
			roots[n], _ = tlog.TreeHash(n, bucketHashReader{tx.Bucket(bucketTree)})
		}
		return nil
	})
	for _, p := range [][2]int64{{6, 11}, {6, 22}, {11, 22}} {
		proof, err := r.ProveConsistency(p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(proof, p[1], roots[p[1]], p[0], roots[p[0]]); err != nil {
			t.Fatalf("consistency %v: %v", p, err)
		}
		bad := roots[p[0]]
		bad[0] ^= 1
		if err := tlog.CheckTree(proof, p[1], roots[p[1]], p[0], bad); err == nil {
			t.Fatalf("consistency %v accepted a wrong old root", p)
		}
	}
}

func dropLine(b []byte, prefix string) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return []byte(strings.Join(append(lines[:i:i], lines[i+1:]...), ""))
		}
	}
	return b
}

func TestProveUncovered(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, CheckpointEvery: 1000, CheckpointInterval: 1 << 40})
	defer s.Close()
	rc, err := s.Append(t.Context(), exchange(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prove(rc.Seq); err == nil || !strings.Contains(err.Error(), "not yet covered") {
		t.Fatalf("Prove(uncovered) = %v", err)
	}
	if _, err := s.Prove(0); err != nil {
		t.Fatalf("Prove(genesis) = %v", err)
	}
}
