package identity

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"
)

// SessionTokenPrefix starts every session token.
const SessionTokenPrefix = "scs_"

// DefaultSessionTokenTTL is the lifetime of session tokens when
// Config.SessionTokenTTL is zero.
const DefaultSessionTokenTTL = 6 * time.Hour

const minSessionKeyLen = 32

// NewSessionKey returns a random key for Config.SessionKey.
func NewSessionKey() ([]byte, error) {
	k := make([]byte, minSessionKeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("identity: new session key: %w", err)
	}
	return k, nil
}

func (a *Authenticator) authSession(ctx context.Context, raw, tokenHash string) (*Identity, error) {
	return nil, authErr(ErrBadSignature)
}
