package store

import (
	"context"
	"time"
)

// TryLease takes or renews the named lease for holder until ttl from now,
// and reports whether holder has it. A lease whose holder stopped renewing
// it expires, and another instance takes over.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	var got string
	err := s.db.QueryRow(ctx, `
INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, now() + $3::interval)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leases.expires_at < now() OR leases.holder = excluded.holder
RETURNING holder`, name, holder, ttl).Scan(&got)
	if err == nil {
		return got == holder, nil
	}
	if err := translate(err, "taking lease "+name); err != ErrNotFound {
		return false, err
	}
	return false, nil // held by another instance
}

// ReleaseLease gives the lease up if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
	return translate(err, "releasing lease "+name)
}
