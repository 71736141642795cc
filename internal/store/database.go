package store

import "context"

// DatabaseExists reports whether the server s runs on holds a database
// named name.
func (s *Store) DatabaseExists(ctx context.Context, name string) (bool, error) {
	var exists bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists)
	return exists, translate(err, "looking for database "+name)
}
