// Package auth is who may use the management API and the dashboard: API
// keys (only a hash of each is stored; the plain key is shown once), and
// the dashboard sessions opened with them.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// ErrBadKey is returned for a key that is malformed, unknown or revoked
// (and for a session token that is unknown or expired).
var ErrBadKey = errors.New("invalid or revoked API key")

// ErrDuplicateName is returned when a key name is already in use.
var ErrDuplicateName = errors.New("name already used by a key in use")

// APIKey is a stored key (never its secret).
type APIKey struct {
	ID         int64      `db:"id"`
	Name       string     `db:"name"`
	Prefix     string     `db:"prefix"`
	ReadOnly   bool       `db:"read_only"`
	CreatedAt  time.Time  `db:"created_at"`
	LastUsedAt *time.Time `db:"last_used_at"`
	RevokedAt  *time.Time `db:"revoked_at"`
}

// Session is a logged-in dashboard session.
type Session struct {
	Key  APIKey
	CSRF string
}

// scheme starts every key: wmk_<12 hex: the lookup prefix>_<48 hex>.
const scheme = "wmk_"

// UsedEvery is how often a key's last use is recorded, at most.
const UsedEvery = time.Minute

// KeyName checks and trims the name a key is created with.
func KeyName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", errors.New("creating an API key: name: must not be empty")
	}
	if len(name) > 100 {
		return "", errors.New("creating an API key: name: longer than 100 characters")
	}
	return name, nil
}

// NewKey returns a new key in plain text and its lookup prefix.
func NewKey() (key, prefix string) {
	prefix = randomHex(6)
	return scheme + prefix + "_" + randomHex(24), prefix
}

// KeyPrefix extracts the lookup prefix of a key, or "" if it is not a key.
func KeyPrefix(key string) string {
	rest, ok := strings.CutPrefix(key, scheme)
	if !ok {
		return ""
	}
	prefix, secret, ok := strings.Cut(rest, "_")
	if !ok || len(prefix) != 12 || len(secret) != 48 {
		return ""
	}
	return prefix
}

// Hash is what is stored of a key or a session token.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Matches reports, in constant time, whether secret is the one hash was
// made of. A nil hash (no key stored under the prefix) costs the same time
// and never matches.
func Matches(secret string, hash []byte) bool {
	if hash == nil {
		subtle.ConstantTimeCompare(Hash(secret), make([]byte, sha256.Size))
		return false
	}
	return subtle.ConstantTimeCompare(Hash(secret), hash) == 1
}

// NewSession returns a new session's cookie token and its CSRF token.
func NewSession() (token, csrf string) { return randomHex(32), randomHex(32) }

// TokenLike reports whether s has the form of a session's cookie token.
func TokenLike(s string) bool { return len(s) == 64 }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
