package store

// CachedUsers is the number of user ids s's ingestion has cached.
func CachedUsers(s *Store) int { return s.users.len() }
