package store

// NewImporterCaching starts an import whose cache keeps generations of gen
// user ids.
func NewImporterCaching(s *Store, gen int) *Importer { return s.newImporter(gen) }

// ImportCached is the number of user ids im's cache holds.
func ImportCached(im *Importer) int { return im.cache.len() }

// FallbackRows is how many events a statement inserts when an import's
// COPY meets events stored already.
const FallbackRows = fallbackRows
