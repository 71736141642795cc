package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// API keys and dashboard sessions.

// ErrBadKey is returned for a key that is malformed, unknown or revoked.
var ErrBadKey = errors.New("invalid or revoked API key")

// ErrDuplicateName is returned when a key name is already in use.
var ErrDuplicateName = errors.New("name already used by a key in use")

// APIKey is a stored key (never its secret).
type APIKey struct {
	ID         int64
	Name       string
	Prefix     string
	ReadOnly   bool
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

const keyScheme = "wmk_"

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CreateAPIKey creates a key named name and returns it in plain text, the
// only time it is ever available: only its SHA-256 is stored.
func (s *Store) CreateAPIKey(ctx context.Context, name string) (string, error) {
	return s.CreateAPIKeyWith(ctx, name, false)
}

// CreateAPIKeyWith is CreateAPIKey; a read-only key may only read (GET).
func (s *Store) CreateAPIKeyWith(ctx context.Context, name string, readOnly bool) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", errors.New("creating an API key: name: must not be empty")
	}
	if len(name) > 100 {
		return "", errors.New("creating an API key: name: longer than 100 characters")
	}
	prefix := randomHex(6)
	key := keyScheme + prefix + "_" + randomHex(24)
	// In its own (sub)transaction, so a duplicate name leaves a caller's
	// transaction usable.
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (name, prefix, hash, read_only) VALUES ($1, $2, $3, $4)`,
			name, prefix, hashSecret(key), readOnly)
		return err
	})
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" {
		return "", fmt.Errorf("creating API key %q: %w", name, ErrDuplicateName)
	}
	if err != nil {
		return "", translate(err, "creating an API key")
	}
	return key, nil
}

// keyPrefix extracts the lookup prefix of a key, or "".
func keyPrefix(key string) string {
	rest, ok := strings.CutPrefix(key, keyScheme)
	if !ok {
		return ""
	}
	prefix, secret, ok := strings.Cut(rest, "_")
	if !ok || len(prefix) != 12 || len(secret) != 48 {
		return ""
	}
	return prefix
}

// Authenticate returns the key a plain-text key is, if it is known and not
// revoked; the hash is compared in constant time. last_used_at is updated
// at most once a minute.
func (s *Store) Authenticate(ctx context.Context, key string) (APIKey, error) {
	prefix := keyPrefix(key)
	if prefix == "" {
		return APIKey{}, ErrBadKey
	}
	var (
		k    APIKey
		hash []byte
	)
	err := s.db.QueryRow(ctx, `SELECT id, name, prefix, read_only, created_at, last_used_at, revoked_at, hash
		FROM api_keys WHERE prefix = $1`, prefix).Scan(&k.ID, &k.Name, &k.Prefix, &k.ReadOnly, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		// Compare anyway, so an unknown prefix costs the same time.
		subtle.ConstantTimeCompare(hashSecret(key), make([]byte, sha256.Size))
		return APIKey{}, ErrBadKey
	}
	if err != nil {
		return APIKey{}, translate(err, "checking an API key")
	}
	if subtle.ConstantTimeCompare(hashSecret(key), hash) != 1 || k.RevokedAt != nil {
		return APIKey{}, ErrBadKey
	}
	if k.LastUsedAt == nil || time.Since(*k.LastUsedAt) > time.Minute {
		_, _ = s.db.Exec(ctx, `UPDATE api_keys SET last_used_at = now() WHERE id = $1`, k.ID)
	}
	return k, nil
}

// APIKeys lists the keys, newest first, revoked ones included.
func (s *Store) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.Query(ctx, `SELECT id, name, prefix, read_only, created_at, last_used_at, revoked_at
		FROM api_keys ORDER BY id DESC`)
	if err != nil {
		return nil, translate(err, "listing API keys")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[APIKey])
	return out, translate(err, "listing API keys")
}

// RevokeAPIKey revokes the key in use with this name, or this id (a number)
// or prefix, and ends its dashboard sessions. ErrNotFound if none matches.
func (s *Store) RevokeAPIKey(ctx context.Context, ref string) (APIKey, error) {
	var k APIKey
	err := s.inTx(ctx, "revoking an API key", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE api_keys SET revoked_at = now()
			WHERE revoked_at IS NULL AND (name = $1 OR prefix = $1 OR ($1 ~ '^[0-9]{1,18}$' AND id::text = $1))
			RETURNING id, name, prefix, read_only, created_at, last_used_at, revoked_at`, ref).
			Scan(&k.ID, &k.Name, &k.Prefix, &k.ReadOnly, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE key_id = $1`, k.ID)
		return err
	})
	return k, err
}

// Session is a logged-in dashboard session.
type Session struct {
	Key  APIKey
	CSRF string
}

// CreateSession opens a dashboard session for a key and returns the cookie
// token (only its hash is stored).
func (s *Store) CreateSession(ctx context.Context, keyID int64, ttl time.Duration) (token string, sess Session, err error) {
	token = randomHex(32)
	csrf := randomHex(32)
	_, err = s.db.Exec(ctx, `INSERT INTO sessions (token_hash, key_id, csrf, expires_at) VALUES ($1, $2, $3, now() + $4::interval)`,
		hashSecret(token), keyID, csrf, fmt.Sprintf("%d seconds", int(ttl.Seconds())))
	if err != nil {
		return "", Session{}, translate(err, "opening a session")
	}
	// Old sessions go when new ones come.
	_, _ = s.db.Exec(ctx, `DELETE FROM sessions WHERE expires_at < now()`)
	return token, Session{CSRF: csrf}, nil
}

// SessionByToken returns the live session a cookie token names; ErrBadKey
// if it is unknown, expired, or its key was revoked.
func (s *Store) SessionByToken(ctx context.Context, token string) (Session, error) {
	if len(token) != 64 {
		return Session{}, ErrBadKey
	}
	var ss Session
	err := s.db.QueryRow(ctx, `SELECT k.id, k.name, k.prefix, k.read_only, k.created_at, k.last_used_at, k.revoked_at, s.csrf
		FROM sessions s JOIN api_keys k ON k.id = s.key_id
		WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL`, hashSecret(token)).
		Scan(&ss.Key.ID, &ss.Key.Name, &ss.Key.Prefix, &ss.Key.ReadOnly, &ss.Key.CreatedAt, &ss.Key.LastUsedAt, &ss.Key.RevokedAt, &ss.CSRF)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrBadKey
	}
	return ss, translate(err, "reading a session")
}

// EndSession deletes a session (logging out).
func (s *Store) EndSession(ctx context.Context, token string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM sessions WHERE token_hash = $1`, hashSecret(token))
	return translate(err, "ending a session")
}
