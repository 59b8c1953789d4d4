package identity

import "errors"

// Sentinel errors, one per way a credential can be refused. Authenticate and
// Exchange return them wrapped in an *AuthError; test with errors.Is.
var (
	ErrNoCredential      = errors.New("identity: missing credential")
	ErrUnknownToken      = errors.New("identity: unknown runner token")
	ErrMalformed         = errors.New("identity: malformed token")
	ErrUnsigned          = errors.New("identity: unsigned token")
	ErrBadSignature      = errors.New("identity: bad signature")
	ErrUnknownIssuer     = errors.New("identity: unknown issuer")
	ErrWrongIssuer       = errors.New("identity: wrong issuer")
	ErrWrongAudience     = errors.New("identity: wrong audience")
	ErrExpired           = errors.New("identity: token expired")
	ErrNotYetValid       = errors.New("identity: token not yet valid")
	ErrClaimsNotAccepted = errors.New("identity: claims not accepted")
	ErrNotExchangeable   = errors.New("identity: not an OIDC token")
	ErrInvalid           = errors.New("identity: invalid token")
	// ErrIssuerUnavailable means the issuer's discovery document or keys
	// could not be fetched: the credential may be fine, sessctl could not
	// check it. Callers may answer 503 rather than 401.
	ErrIssuerUnavailable = errors.New("identity: issuer unavailable")
)

// reason returns the short text for a sentinel that is safe to show the
// runner and to write into a record.
func reason(sentinel error) string {
	switch sentinel {
	case ErrNoCredential:
		return "missing credential"
	case ErrUnknownToken:
		return "unknown runner token"
	case ErrMalformed:
		return "malformed token"
	case ErrUnsigned:
		return "unsigned token"
	case ErrBadSignature:
		return "bad signature"
	case ErrUnknownIssuer:
		return "unknown issuer"
	case ErrWrongIssuer:
		return "wrong issuer"
	case ErrWrongAudience:
		return "wrong audience"
	case ErrExpired:
		return "expired"
	case ErrNotYetValid:
		return "not yet valid"
	case ErrClaimsNotAccepted:
		return "claims not accepted"
	case ErrNotExchangeable:
		return "not an oidc token"
	case ErrIssuerUnavailable:
		return "issuer unavailable"
	default:
		return "invalid token"
	}
}

// AuthError is the error Authenticate and Exchange return when a credential
// is refused. Reason is short, fixed text that is safe to show the runner and
// to record ("expired", "wrong audience", "unknown issuer", "bad signature",
// "unsigned token", "malformed token", "unknown runner token",
// "missing credential", ...): it never contains the credential or details
// an attacker could use.
type AuthError struct {
	Reason string
	// Err is one of the Err* sentinels of this package.
	Err error
}

func (e *AuthError) Error() string { return "identity: " + e.Reason }

// Unwrap returns the sentinel, so that errors.Is(err, ErrExpired) works.
func (e *AuthError) Unwrap() error { return e.Err }

// authErr wraps a sentinel in an *AuthError with its safe reason.
func authErr(sentinel error) *AuthError {
	return &AuthError{Reason: reason(sentinel), Err: sentinel}
}
