package store

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SendsChannel is the NOTIFY channel on which instances tell each other
// that sends became due now.
const SendsChannel = "waymark_sends"

// Notify sends a notification on channel.
func (s *Store) Notify(ctx context.Context, channel string) error {
	_, err := s.db.Exec(ctx, "SELECT pg_notify($1, '')", channel)
	return translate(err, "notifying "+channel)
}

// Listen calls fn for every notification on channel until ctx is done,
// reconnecting after failures. It holds one connection of pool.
func Listen(ctx context.Context, pool *pgxpool.Pool, channel string, fn func(), log *slog.Logger) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
				return err
			}
			// Anything that happened while not listening is caught up by
			// the caller's poll; wake once now for it.
			fn()
			for {
				if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
					conn.Conn().Close(context.Background()) //nolint:errcheck // do not return a LISTENing connection to the pool
					return err
				}
				fn()
			}
		}()
		if ctx.Err() != nil {
			return
		}
		log.Warn("listening for notifications", "channel", channel, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
