package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// bodyTag is the domain separation tag of a body commitment.
const bodyTag = "sessctl/body/v1\x00"

// commit returns SHA-256(bodyTag ‖ salt ‖ body).
func commit(salt, body []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(bodyTag))
	h.Write(salt)
	h.Write(body)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// sealBody returns the stored value (salt ‖ body) and the commitment for
// body, with a fresh random salt.
func sealBody(body []byte) ([]byte, *Commitment, error) {
	v := make([]byte, saltSize+len(body))
	if _, err := rand.Read(v[:saltSize]); err != nil {
		return nil, nil, fmt.Errorf("store: salt: %w", err)
	}
	copy(v[saltSize:], body)
	sum := commit(v[:saltSize], body)
	return v, &Commitment{Hash: hex.EncodeToString(sum[:]), Size: int64(len(body))}, nil
}

// checkBody reports whether the stored value (salt ‖ body) matches c.
func checkBody(v []byte, c *Commitment) bool {
	if len(v) < saltSize || int64(len(v)-saltSize) != c.Size {
		return false
	}
	sum := commit(v[:saltSize], v[saltSize:])
	want, err := hex.DecodeString(c.Hash)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	return [sha256.Size]byte(want) == sum
}
