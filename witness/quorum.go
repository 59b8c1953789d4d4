package witness

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// QuorumResult is what [CheckQuorum] found on a checkpoint.
type QuorumResult struct {
	// Valid names the witnesses (by verifier key name) whose
	// cosignature verifies.
	Valid []string
	// Missing names the witnesses with no signature line on the
	// checkpoint; Invalid those whose line does not verify.
	Missing, Invalid []string
}

// CheckQuorum checks that the signed checkpoint msg carries valid
// cosignatures from at least quorum of the witnesses whose verifier keys
// are vkeys. The log's own signature is not checked here. The error names
// the missing and invalid cosignatures.
func CheckQuorum(msg []byte, vkeys []string, quorum int) (*QuorumResult, error) {
	if quorum < 0 || quorum > len(vkeys) {
		return nil, fmt.Errorf("witness: quorum %d with %d witness keys", quorum, len(vkeys))
	}
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil, errors.New("witness: checkpoint is not a signed note")
	}
	body, sigs := msg[:i+1], msg[i+2:]
	res := &QuorumResult{}
	for _, vk := range vkeys {
		v, err := NewVerifier(vk)
		if err != nil {
			return nil, err
		}
		var lines [][]byte
		for _, line := range bytes.SplitAfter(sigs, []byte("\n")) {
			if name, hash, ok := sigKey(line); ok && name == v.Name() && hash == v.KeyHash() {
				lines = append(lines, line)
			}
		}
		if len(lines) == 0 {
			res.Missing = append(res.Missing, v.Name())
			continue
		}
		ok := false
		for _, line := range lines {
			one := append(append(bytes.Clone(body), '\n'), line...)
			if _, err := note.Open(one, note.VerifierList(v)); err == nil {
				ok = true
				break
			}
		}
		if ok {
			res.Valid = append(res.Valid, v.Name())
		} else {
			res.Invalid = append(res.Invalid, v.Name())
		}
	}
	if len(res.Valid) >= quorum {
		return res, nil
	}
	var why []string
	if len(res.Missing) > 0 {
		why = append(why, "missing from "+strings.Join(res.Missing, ", "))
	}
	if len(res.Invalid) > 0 {
		why = append(why, "invalid from "+strings.Join(res.Invalid, ", "))
	}
	return res, fmt.Errorf("%d of %d required cosignatures (%s)", len(res.Valid), quorum, strings.Join(why, "; "))
}

// sigKey returns the key name and key hash of a note signature line.
func sigKey(line []byte) (string, uint32, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("— "))
	if !ok {
		return "", 0, false
	}
	name, b64, ok := strings.Cut(strings.TrimSuffix(string(rest), "\n"), " ")
	if !ok {
		return "", 0, false
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sig) < 4 {
		return "", 0, false
	}
	return name, binary.BigEndian.Uint32(sig), true
}
