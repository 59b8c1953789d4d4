package witness_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"

	"github.com/sessctl/sessctl/witness"
)

const body = "example.test/log\n5\nKgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"

// cosign signs body with torchwood's cosignature/v1 signer, an
// implementation independent of this package's verifier.
func cosign(t *testing.T, name string) (vkey string, signed []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := torchwood.NewCosignatureSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		t.Fatal(err)
	}
	return s.Verifier().String(), msg
}

func TestVerifierAgainstTorchwood(t *testing.T) {
	vkey, signed := cosign(t, "w.test/a")
	v, err := witness.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil || n.Text != body || len(n.Sigs) != 1 {
		t.Fatalf("open: %v", err)
	}
	// Another body under the same signature: refused.
	forged := bytes.Replace(signed, []byte("\n5\n"), []byte("\n6\n"), 1)
	if _, err := note.Open(forged, note.VerifierList(v)); err == nil {
		t.Fatal("a cosignature verified over another checkpoint")
	}
	if res, err := witness.CheckQuorum(signed, []string{vkey}, 1); err != nil || len(res.Valid) != 1 {
		t.Fatalf("quorum: %+v %v", res, err)
	}
}

func TestCheckQuorum(t *testing.T) {
	ka, signedA := cosign(t, "w.test/a")
	kb, _ := cosign(t, "w.test/b")
	kc, signedC := cosign(t, "w.test/c")
	both := append(bytes.Clone(signedA), signedC[bytes.LastIndex(signedC, []byte("\n\n"))+2:]...)
	for _, tc := range []struct {
		name   string
		msg    []byte
		keys   []string
		quorum int
		err    string
	}{
		{"one of one", signedA, []string{ka}, 1, ""},
		{"two of three", both, []string{ka, kb, kc}, 2, ""},
		{"three of three", both, []string{ka, kb, kc}, 3, "2 of 3 required cosignatures (missing from w.test/b)"},
		{"missing", signedA, []string{kb}, 1, "0 of 1 required cosignatures (missing from w.test/b)"},
		{"zero quorum", signedA, []string{kb}, 0, ""},
		{"quorum above keys", signedA, []string{ka}, 2, "quorum 2 with 1 witness keys"},
		{"not a note", []byte(body), []string{ka}, 1, "not a signed note"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := witness.CheckQuorum(tc.msg, tc.keys, tc.quorum)
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
	// A line with the right key name and hash but a bad signature is
	// named invalid.
	bad := bytes.Clone(signedA)
	j := bytes.LastIndex(bad, []byte(" ")) + 10
	if bad[j] == 'A' {
		bad[j] = 'B'
	} else {
		bad[j] = 'A'
	}
	if _, err := witness.CheckQuorum(bad, []string{ka}, 1); err == nil || !strings.Contains(err.Error(), "invalid from w.test/a") {
		t.Fatalf("tampered cosignature: %v", err)
	}
}

func TestNewVerifierRejects(t *testing.T) {
	ka, _ := cosign(t, "w.test/a")
	_, vkeyEd, err := note.GenerateKey(rand.Reader, "w.test/plain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := witness.NewVerifier(vkeyEd); err != nil {
		t.Fatalf("plain Ed25519 note key: %v", err)
	}
	name, rest, _ := strings.Cut(ka, "+")
	hash, key, _ := strings.Cut(rest, "+")
	for _, bad := range []string{"", "nope", name, name + "+" + hash, name + "+00000000+" + key, "other+" + hash + "+" + key, name + "+" + hash + "+!!!", name + "+" + hash + "+BAAA"} {
		if _, err := witness.NewVerifier(bad); err == nil {
			t.Errorf("NewVerifier(%q) accepted", bad)
		}
	}
}

func FuzzNewVerifier(f *testing.F) {
	f.Add("w.test/a+12345678+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("x+00000000+AQ==")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := witness.NewVerifier(s)
		if err == nil {
			v.Verify([]byte(body), make([]byte, 72))
		}
	})
}
