package store

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// tlogProofHeader starts a C2SP tlog-proof.
const tlogProofHeader = "c2sp.org/tlog-proof@v1"

// IsTLogProof reports whether data looks like a C2SP tlog-proof.
func IsTLogProof(data []byte) bool { return bytes.HasPrefix(data, []byte(tlogProofHeader+"\n")) }

// ProveTLog returns a C2SP tlog-proof (c2sp.org/tlog-proof) for record
// seq: its leaf as the extra data, its index, the inclusion proof, and the
// newest checkpoint with the cosignatures stored for it. FORMAT.md §7.1
// describes it.
func (r *Reader) ProveTLog(seq uint64) ([]byte, error) { return proveTLog(r.db, seq) }

// ProveTLog is [Reader.ProveTLog] on the live log.
func (s *Store) ProveTLog(seq uint64) ([]byte, error) { return proveTLog(s.db, seq) }

func proveTLog(db *bbolt.DB, seq uint64) ([]byte, error) {
	cosigned := func(tx *bbolt.Tx, k, _ []byte) []byte { return cosignedIn(tx, binary.BigEndian.Uint64(k)) }
	return writeProof(db, seq, cosigned, func(out *bytes.Buffer, in *inclusion) {
		fmt.Fprintf(out, "%s\nextra %s\nindex %d\n", tlogProofHeader, base64.StdEncoding.EncodeToString(in.leaf), seq)
		for _, h := range in.proof {
			fmt.Fprintf(out, "%s\n", h)
		}
		out.WriteString("\n")
		out.Write(in.note)
	})
}

// VerifyTLogProof checks a C2SP tlog-proof made by ProveTLog offline:
// the checkpoint's signature by pubkey (required: the proof does not name
// the key), and that the leaf in its extra data is record Index of the
// signed tree. It returns the checkpoint note too, for checking its
// cosignatures.
func VerifyTLogProof(proof []byte, pubkey string) (*ProofResult, []byte, error) {
	res, note, err := verifyTLogProof(proof, pubkey)
	if err != nil {
		return nil, nil, fmt.Errorf("store: tlog-proof: %w", err)
	}
	return res, note, nil
}

func verifyTLogProof(proof []byte, pubkey string) (*ProofResult, []byte, error) {
	if !IsTLogProof(proof) {
		return nil, nil, errors.New("not a c2sp.org/tlog-proof@v1")
	}
	if pubkey == "" {
		return nil, nil, errors.New("the log's public key is needed (--pubkey): a tlog-proof does not carry it")
	}
	head, cp, ok := bytes.Cut(proof, []byte("\n\n"))
	if !ok {
		return nil, nil, errors.New("no empty line before the checkpoint")
	}
	res := &ProofResult{PublicKey: pubkey, KeyPinned: true}
	var rp tlog.RecordProof
	var haveIndex bool
	sc := bufio.NewScanner(bytes.NewReader(head))
	sc.Buffer(nil, 4*maxLeafSize/3+64)
	sc.Scan() // header
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !haveIndex && res.Leaf == nil && strings.HasPrefix(line, "extra "):
			b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "extra "))
			if err != nil {
				return nil, nil, errors.New("bad extra encoding")
			}
			res.Leaf = b
		case !haveIndex && strings.HasPrefix(line, "index "):
			v := strings.TrimPrefix(line, "index ")
			n, err := strconv.ParseUint(v, 10, 63)
			if err != nil || strconv.FormatUint(n, 10) != v {
				return nil, nil, fmt.Errorf("bad index %q", v)
			}
			res.Seq, haveIndex = n, true
		case haveIndex:
			h, err := tlog.ParseHash(line)
			if err != nil {
				return nil, nil, fmt.Errorf("bad proof hash %q", line)
			}
			if len(rp) >= 63 {
				return nil, nil, errors.New("too many proof hashes")
			}
			rp = append(rp, h)
		default:
			return nil, nil, fmt.Errorf("unexpected line %.40q", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if !haveIndex {
		return nil, nil, errors.New("no index line")
	}
	if res.Leaf == nil {
		return nil, nil, errors.New("no extra line: sessctl puts the record's leaf there")
	}
	if err := res.check(cp, pubkey, rp); err != nil {
		return nil, nil, err
	}
	return res, cp, nil
}
