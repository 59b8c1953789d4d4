package witness

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Signature algorithm bytes of note verifier keys (C2SP signed-note).
const (
	algEd25519     = 0x01 // a plain note signature
	algCosignature = 0x04 // C2SP tlog-cosignature cosignature/v1, Ed25519
)

// NewVerifier returns a note verifier for a witness's verifier key
// "name+hash+base64(alg ‖ key)": a cosignature/v1 key (alg 0x04, C2SP
// tlog-cosignature), or a plain Ed25519 note key (alg 0x01), which some
// witnesses use.
func NewVerifier(vkey string) (note.Verifier, error) {
	name, rest, ok := strings.Cut(vkey, "+")
	if !ok || name == "" {
		return nil, fmt.Errorf("witness: malformed verifier key %q", vkey)
	}
	hash16, b64, ok := strings.Cut(rest, "+")
	if !ok || len(hash16) != 8 {
		return nil, fmt.Errorf("witness: malformed verifier key %q", vkey)
	}
	hash, err1 := strconv.ParseUint(hash16, 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(b64)
	if err1 != nil || err2 != nil || len(key) == 0 {
		return nil, fmt.Errorf("witness: malformed verifier key %q", vkey)
	}
	switch key[0] {
	case algEd25519:
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, fmt.Errorf("witness: verifier key %q: %w", vkey, err)
		}
		return v, nil
	case algCosignature:
		if len(key) != 1+ed25519.PublicKeySize {
			return nil, fmt.Errorf("witness: verifier key %q: Ed25519 key of %d bytes", vkey, len(key)-1)
		}
		if strings.ContainsAny(name, " +\n") {
			return nil, fmt.Errorf("witness: verifier key %q: invalid name", vkey)
		}
		v := &cosigVerifier{name: name, key: ed25519.PublicKey(key[1:])}
		v.hash = keyHash(name, key)
		if uint32(hash) != v.hash {
			return nil, fmt.Errorf("witness: verifier key %q: key hash does not match", vkey)
		}
		return v, nil
	}
	return nil, fmt.Errorf("witness: verifier key %q: unknown algorithm 0x%02x", vkey, key[0])
}

// keyHash is the key ID of a note key: SHA-256(name ‖ "\n" ‖ alg ‖ key)[:4].
func keyHash(name string, algKey []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write(algKey)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// cosigVerifier verifies C2SP cosignature/v1 signatures: a big-endian
// 8-byte timestamp followed by an Ed25519 signature over
// "cosignature/v1\ntime <timestamp>\n" ‖ checkpoint body.
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }

func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > 1<<63-1 {
		return false
	}
	m := cosignedMessage(t, msg)
	return ed25519.Verify(v.key, m, sig[8:])
}

// cosignedMessage is the message a cosignature/v1 signature signs.
func cosignedMessage(t uint64, body []byte) []byte {
	m := make([]byte, 0, 40+len(body))
	m = append(m, "cosignature/v1\ntime "...)
	m = strconv.AppendUint(m, t, 10)
	m = append(m, '\n')
	return append(m, body...)
}

// CosignatureTime returns the time a cosignature/v1 signature says it was
// made (sig is the note signature's decoded bytes after the key hash).
func CosignatureTime(sig []byte) (time.Time, error) {
	if len(sig) != 8+ed25519.SignatureSize {
		return time.Time{}, errors.New("witness: not a cosignature/v1 signature")
	}
	t := binary.BigEndian.Uint64(sig)
	if t > 1<<63-1 {
		return time.Time{}, errors.New("witness: cosignature timestamp out of range")
	}
	return time.Unix(int64(t), 0), nil
}
