package rules

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// SecretHMAC returns the hex HMAC-SHA256 of secret under key: what a record
// keeps of a masked value, so that an investigator holding the secret can
// ask whether it passed, while the log never holds it.
func SecretHMAC(key, secret []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write(secret)
	return hex.EncodeToString(h.Sum(nil))
}
