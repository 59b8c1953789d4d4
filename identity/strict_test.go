package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sessctl/sessctl/identity/oidctest"
)

// spellings returns every string that differs from s only in the unused
// low bits of its last base64url character, s itself first.
func spellings(t *testing.T, s string) []string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	unused := map[int]int{2: 4, 3: 2}[len(s)%4] // chars in the last group → unused bits
	if unused == 0 {
		t.Fatalf("%d characters: no unused bits", len(s))
	}
	last := strings.IndexByte(alphabet, s[len(s)-1])
	base := last &^ (1<<unused - 1)
	out := []string{s}
	for v := 0; v < 1<<unused; v++ {
		if base+v != last {
			out = append(out, s[:len(s)-1]+string(alphabet[base+v]))
		}
	}
	for _, o := range out {
		if _, err := base64.RawURLEncoding.DecodeString(o); err != nil {
			t.Fatalf("lenient decoding refuses %q: the test builds wrong spellings", o)
		}
	}
	return out
}

// TestTokenSpellings: a token whose signature ends in unused bits has
// several lenient spellings; exactly one of them is accepted.
func TestTokenSpellings(t *testing.T) {
	ti := oidctest.NewIssuer(t)
	kid := ti.AddKey(t, jose.RS256)
	clock := &fakeClock{t: time.Now()}
	a := newOIDCAuthenticator(t, clock, OIDCIssuer{Issuer: ti.URL(), Audience: "sessctl", CAFile: ti.CAFile(t)})
	ctx := context.Background()
	oidcToken := ti.Sign(t, kid, ti.GitHubClaims(clock.Now()))
	session, _, err := a.Exchange(ctx, oidcToken)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token string
		want        int // spellings expected: 4 for a 32-byte MAC, 16 for a 256-byte RSA signature
	}{
		{"session token MAC", session, 4},
		{"OIDC signature", oidcToken, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cut := strings.LastIndexByte(tt.token, '.') + 1
			all := spellings(t, tt.token[cut:])
			if len(all) != tt.want {
				t.Fatalf("%d spellings, want %d", len(all), tt.want)
			}
			accepted := 0
			for i, sig := range all {
				_, err := a.Authenticate(ctx, tt.token[:cut]+sig)
				switch {
				case err == nil:
					accepted++
					if i != 0 {
						t.Errorf("alternate spelling %q accepted", sig)
					}
				case !errors.Is(err, ErrMalformed):
					t.Errorf("spelling %q: err = %v, want ErrMalformed", sig, err)
				}
			}
			if accepted != 1 {
				t.Fatalf("%d of %d spellings accepted, want 1", accepted, len(all))
			}
		})
	}
}

func TestParseCredentialStrictBasic(t *testing.T) {
	good := base64.StdEncoding.EncodeToString([]byte("x:tok")) // "eDp0b2s=": the '=' leaves 2 unused bits in 's'
	if got := ParseCredential("Basic " + good); got != "tok" {
		t.Fatalf("ParseCredential(%q) = %q", good, got)
	}
	alt := good[:len(good)-2] + "t="
	if _, err := base64.StdEncoding.DecodeString(alt); err != nil {
		t.Fatalf("test builds a wrong spelling: %v", err)
	}
	if got := ParseCredential("Basic " + alt); got != "" {
		t.Fatalf("alternate spelling %q accepted as %q", alt, got)
	}
}
