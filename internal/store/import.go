package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/ingest"
)

// Import stores a large chunk of messages from a bulk file in one
// transaction, with the same identity and de-duplication rules as Ingest.
func (s *Store) Import(ctx context.Context, msgs []ingest.Message) (ingest.Result, error) {
	var res ingest.Result
	err := s.inTx(ctx, "importing events", func(tx pgx.Tx) error {
		var err error
		res, err = ingestTx(ctx, tx, msgs)
		return err
	})
	return res, err
}
