package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, its
// size (number of records) and the RFC 6962 root hash of those records.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// String returns the checkpoint body: origin, size and base64 root, each on
// its own line, ending in a newline.
func (c Checkpoint) String() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, c.Root)
}

// ParseCheckpoint parses a checkpoint body (the text of a signed note).
// Extension lines after the root are allowed and ignored.
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitAfterN(text, "\n", 4)
	if len(lines) < 3 || !strings.HasSuffix(lines[2], "\n") {
		return Checkpoint{}, errors.New("store: checkpoint: want origin, size and root lines")
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	if origin == "" {
		return Checkpoint{}, errors.New("store: checkpoint: empty origin")
	}
	size, err := strconv.ParseInt(strings.TrimSuffix(lines[1], "\n"), 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != strings.TrimSuffix(lines[1], "\n") {
		return Checkpoint{}, fmt.Errorf("store: checkpoint: bad size %q", strings.TrimSuffix(lines[1], "\n"))
	}
	root, err := tlog.ParseHash(strings.TrimSuffix(lines[2], "\n"))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("store: checkpoint: bad root: %w", err)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// OpenCheckpoint checks the signature of a signed checkpoint note against
// the note verifier key vkey and returns its body.
func OpenCheckpoint(msg []byte, vkey string) (Checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("store: checkpoint: bad public key: %w", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("store: checkpoint: %w", err)
	}
	return ParseCheckpoint(n.Text)
}

// SplitNotes splits the concatenation of signed notes (as written to a
// checkpoint file) into the individual notes. A note ends after its last
// signature line ("— name sig"); the next non-blank line starts the next
// note.
func SplitNotes(data []byte) [][]byte {
	var notes [][]byte
	start := 0
	inSigs := false
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off + 1
		}
		line := data[off:end]
		switch {
		case bytes.HasPrefix(line, []byte("— ")):
			inSigs = true
		case inSigs:
			// First line after a signature block: a new note.
			notes = append(notes, data[start:off])
			start = off
			inSigs = false
		}
		if !inSigs && start == off && len(bytes.TrimSpace(line)) == 0 {
			// Blank lines between notes belong to neither.
			start = end
		}
		off = end
	}
	if start < len(data) && len(bytes.TrimSpace(data[start:])) > 0 {
		notes = append(notes, data[start:])
	}
	return notes
}

// signCheckpoint signs c with signer and returns the note bytes.
func signCheckpoint(c Checkpoint, signer note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: c.String()}, signer)
	if err != nil {
		return nil, fmt.Errorf("store: sign checkpoint: %w", err)
	}
	return msg, nil
}

// loadOrCreateKey returns the signer in file, creating a new Ed25519 note
// key named name if the file does not exist. It refuses a key file that
// its group or others can read. It also returns the verifier key.
func loadOrCreateKey(file, name string) (note.Signer, string, error) {
	fi, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, "", fmt.Errorf("store: generate signing key: %w", err)
		}
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, "", fmt.Errorf("store: create signing key %s: %w", file, err)
		}
		if _, err := f.WriteString(skey + "\n"); err != nil {
			f.Close()
			return nil, "", fmt.Errorf("store: write signing key %s: %w", file, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, "", fmt.Errorf("store: write signing key %s: %w", file, err)
		}
		if err := f.Close(); err != nil {
			return nil, "", fmt.Errorf("store: write signing key %s: %w", file, err)
		}
		// The public half is no secret; keep it beside the key for auditors.
		if err := os.WriteFile(file+".pub", []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("store: write public key %s.pub: %w", file, err)
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			return nil, "", fmt.Errorf("store: signing key: %w", err)
		}
		return s, vkey, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("store: signing key %s: %w", file, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("store: signing key %s is readable by group or others (mode %04o); chmod 600 it", file, fi.Mode().Perm())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("store: read signing key %s: %w", file, err)
	}
	skey := strings.TrimSpace(string(data))
	s, err := note.NewSigner(skey)
	if err != nil {
		// Never echo the key material.
		return nil, "", fmt.Errorf("store: signing key %s is not a note signer key", file)
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return nil, "", fmt.Errorf("store: signing key %s is not a note signer key", file)
	}
	return s, vkey, nil
}

// verifierKey derives the verifier key from a note signer key
// ("PRIVATE+KEY+name+hash+base64(alg ‖ seed)").
func verifierKey(skey string) (string, error) {
	rest, ok := strings.CutPrefix(skey, "PRIVATE+KEY+")
	if !ok {
		return "", errors.New("not a note signer key")
	}
	name, rest, ok := strings.Cut(rest, "+")
	if !ok {
		return "", errors.New("not a note signer key")
	}
	_, b64, ok := strings.Cut(rest, "+")
	if !ok {
		return "", errors.New("not a note signer key")
	}
	key, err := decodeB64(b64)
	if err != nil || len(key) != 1+32 || key[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	return note.NewEd25519VerifierKey(name, ed25519Public(key[1:]))
}

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.Strict().DecodeString(s) }

func ed25519Public(seed []byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}
