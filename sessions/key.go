package sessions

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxSessionID is the longest session id in bytes.
const MaxSessionID = 256

// ValidateID accepts 1 to MaxSessionID bytes of UTF-8.
func ValidateID(id string) error {
	if id == "" || len(id) > MaxSessionID || !utf8.ValidString(id) {
		return fmt.Errorf("session id of %d bytes: %w", len(id), ErrInvalidID)
	}
	return nil
}

// Key is the KV key of a session: "<pool>.<base64url of the id>". Any UTF-8 id
// (spaces, dots, '@', '/', emoji) becomes letters, digits, '-' and '_', and the
// encoding is reversible.
func Key(pool, id string) string {
	return pool + "." + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// ParseKey returns the pool and session id of a key.
func ParseKey(key string) (pool, id string, err error) {
	pool, enc, ok := strings.Cut(key, ".")
	if !ok {
		return "", "", fmt.Errorf("parse key %q: %w", key, ErrInvalidID)
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", "", fmt.Errorf("parse key %q: %w: %w", key, ErrInvalidID, err)
	}
	return pool, string(b), nil
}
