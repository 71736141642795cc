package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/auth"
)

// API keys and dashboard sessions.

const sqlKeyColumns = `id, name, prefix, read_only, created_at, last_used_at, revoked_at`

// CreateAPIKey creates a key named name and returns it in plain text, the
// only time it is ever available: only its SHA-256 is stored.
func (s *Store) CreateAPIKey(ctx context.Context, name string) (string, error) {
	return s.CreateAPIKeyWith(ctx, name, false)
}

// CreateAPIKeyWith is CreateAPIKey; a read-only key may only read (GET).
func (s *Store) CreateAPIKeyWith(ctx context.Context, name string, readOnly bool) (string, error) {
	name, err := auth.KeyName(name)
	if err != nil {
		return "", err
	}
	key, prefix := auth.NewKey()
	// In its own (sub)transaction, so a duplicate name leaves a caller's
	// transaction usable.
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (name, prefix, hash, read_only) VALUES ($1, $2, $3, $4)`,
			name, prefix, auth.Hash(key), readOnly)
		return err
	})
	if uniqueViolation(err) {
		return "", fmt.Errorf("creating API key %q: %w", name, auth.ErrDuplicateName)
	}
	if err != nil {
		return "", translate(err, "creating an API key")
	}
	return key, nil
}

// storedKey is a key with its hash.
type storedKey struct {
	auth.APIKey
	Hash []byte `db:"hash"`
}

// Authenticate returns the key a plain-text key is, if it is known and not
// revoked; the hash is compared in constant time. last_used_at is updated
// at most once a minute (auth.UsedEvery).
func (s *Store) Authenticate(ctx context.Context, key string) (auth.APIKey, error) {
	prefix := auth.KeyPrefix(key)
	if prefix == "" {
		return auth.APIKey{}, auth.ErrBadKey
	}
	k, err := queryRow[storedKey](ctx, s.db, `SELECT `+sqlKeyColumns+`, hash FROM api_keys WHERE prefix = $1`, prefix)
	if errors.Is(err, pgx.ErrNoRows) {
		// Compare anyway, so an unknown prefix costs the same time.
		auth.Matches(key, nil)
		return auth.APIKey{}, auth.ErrBadKey
	}
	if err != nil {
		return auth.APIKey{}, translate(err, "checking an API key")
	}
	if !auth.Matches(key, k.Hash) || k.RevokedAt != nil {
		return auth.APIKey{}, auth.ErrBadKey
	}
	if k.LastUsedAt == nil || time.Since(*k.LastUsedAt) > auth.UsedEvery {
		_, _ = s.db.Exec(ctx, `UPDATE api_keys SET last_used_at = now() WHERE id = $1`, k.ID)
	}
	return k.APIKey, nil
}

// CheckAPIKey implements tracking.Store: the suppression endpoints take a
// management API key.
func (s *Store) CheckAPIKey(ctx context.Context, key string) (known, readOnly bool, err error) {
	k, err := s.Authenticate(ctx, key)
	if errors.Is(err, auth.ErrBadKey) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return true, k.ReadOnly, nil
}

// APIKeys lists the keys, newest first, revoked ones included.
func (s *Store) APIKeys(ctx context.Context) ([]auth.APIKey, error) {
	out, err := queryRows[auth.APIKey](ctx, s.db, `SELECT `+sqlKeyColumns+` FROM api_keys ORDER BY id DESC`)
	return out, translate(err, "listing API keys")
}

// RevokeAPIKey revokes the key in use with this name, or this id (a number)
// or prefix, and ends its dashboard sessions. ErrNotFound if none matches.
func (s *Store) RevokeAPIKey(ctx context.Context, ref string) (auth.APIKey, error) {
	var k auth.APIKey
	err := s.inTx(ctx, "revoking an API key", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE api_keys SET revoked_at = now()
			WHERE revoked_at IS NULL AND (name = $1 OR prefix = $1 OR ($1 ~ '^[0-9]{1,18}$' AND id::text = $1))
			RETURNING `+sqlKeyColumns, ref)
		if err != nil {
			return err
		}
		if k, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[auth.APIKey]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE key_id = $1`, k.ID)
		return err
	})
	return k, err
}

// CreateSession opens a dashboard session for a key and returns the cookie
// token (only its hash is stored).
func (s *Store) CreateSession(ctx context.Context, keyID int64, ttl time.Duration) (token string, sess auth.Session, err error) {
	token, csrf := auth.NewSession()
	_, err = s.db.Exec(ctx, `INSERT INTO sessions (token_hash, key_id, csrf, expires_at) VALUES ($1, $2, $3, now() + $4::interval)`,
		auth.Hash(token), keyID, csrf, fmt.Sprintf("%d seconds", int(ttl.Seconds())))
	if err != nil {
		return "", auth.Session{}, translate(err, "opening a session")
	}
	// Old sessions go when new ones come.
	_, _ = s.db.Exec(ctx, `DELETE FROM sessions WHERE expires_at < now()`)
	return token, auth.Session{CSRF: csrf}, nil
}

// sessionRow is a session's key and CSRF token.
type sessionRow struct {
	auth.APIKey
	CSRF string `db:"csrf"`
}

// SessionByToken returns the live session a cookie token names;
// auth.ErrBadKey if it is unknown, expired, or its key was revoked.
func (s *Store) SessionByToken(ctx context.Context, token string) (auth.Session, error) {
	if !auth.TokenLike(token) {
		return auth.Session{}, auth.ErrBadKey
	}
	r, err := queryRow[sessionRow](ctx, s.db, `SELECT k.id, k.name, k.prefix, k.read_only, k.created_at, k.last_used_at, k.revoked_at, s.csrf
		FROM sessions s JOIN api_keys k ON k.id = s.key_id
		WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL`, auth.Hash(token))
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.Session{}, auth.ErrBadKey
	}
	return auth.Session{Key: r.APIKey, CSRF: r.CSRF}, translate(err, "reading a session")
}

// EndSession deletes a session (logging out).
func (s *Store) EndSession(ctx context.Context, token string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM sessions WHERE token_hash = $1`, auth.Hash(token))
	return translate(err, "ending a session")
}
