package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Senders: each sender's lease and presence, and what a stopped sender
// left claimed or on the wire.

// Heartbeat implements campaigns.SendStore.
func (s *Store) Heartbeat(ctx context.Context, holder string, ttl time.Duration) error {
	_, err := s.db.Exec(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ('sender:' || $1, $1, now() + $2::interval)
		ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at`, holder, ttl)
	return translate(err, "sender heartbeat")
}

// presenceClass is the first key of every sender's presence lock ("WYMK");
// the second is hashtext(holder).
const presenceClass = 1465470283

// sqlSendersAlive lists the senders that may still be working: their
// lease has not expired, and, if they hold their presence, some session
// still holds its lock (a lock this transaction can take is held by no
// one: the sender's process is gone, its connections with it).
const sqlSendersAlive = `SELECT holder FROM leases WHERE name LIKE 'sender:%' AND expires_at > now()
    AND NOT (presence AND pg_try_advisory_xact_lock($1, hashtext(holder)))`

// HoldPresence implements campaigns.SendStore: a connection of holder's own
// (not from the pool, so closing the pool never waits for it) holds a
// session advisory lock for as long as the process lives, and the lease
// says so. Killed, the process's connections close and PostgreSQL drops
// the lock at once; other senders then release holder's claims without
// waiting for its lease to expire. If the connection is lost (PostgreSQL
// restarted), holder may look gone until it is back, which costs at most
// the messages it had on the wire being recorded 'unknown' (never resent):
// a claim it lost is never sent by it, as marking a send on the wire
// needs holder's claim. On a store without a pool (a test's transaction)
// the lease alone tells.
//
// Behind a pooler in transaction mode a session lock does not follow its
// client: there, run the senders on direct connections.
func (s *Store) HoldPresence(ctx context.Context, holder string, ttl time.Duration) (release func(), err error) {
	pool := s.Pool()
	if pool == nil {
		return func() {}, nil
	}
	cfg := pool.Config().ConnConfig.Copy()
	lock := func(ctx context.Context) (*pgx.Conn, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, presenceClass, holder); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
		return conn, nil
	}
	conn, err := lock(ctx)
	if err != nil {
		return nil, translate(err, "holding the sender's presence")
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO leases (name, holder, expires_at, presence) VALUES ('sender:' || $1, $1, now() + $2::interval, true)
		ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at, presence = true`, holder, ttl); err != nil {
		conn.Close(context.Background())
		return nil, translate(err, "recording the sender's presence")
	}
	// Kept: a lost connection is made again (PostgreSQL restarted).
	keep, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-keep.Done():
				conn.Close(context.Background())
				return
			case <-t.C:
			}
			if conn.Ping(keep) == nil {
				continue
			}
			conn.Close(context.Background())
			if c, err := lock(keep); err == nil {
				conn = c
			}
		}
	}()
	return func() {
		stop()
		<-done
	}, nil
}

// RecoverInDoubt implements campaigns.SendStore: sends a stopped sender
// left on the wire become 'unknown' (never resent); its claims on sends it
// had not started are released. A sender is stopped once its lease
// expired, or at once if it held its presence and no longer does.
func (s *Store) RecoverInDoubt(ctx context.Context) (int, error) {
	n := 0
	err := s.inTx(ctx, "recovering sends in doubt", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sends SET status = 'unknown', claimed_by = NULL, updated_at = now(),
		smtp_response = 'in doubt: the sender stopped while this message was on the wire; not resent'
		WHERE status = 'sending' AND (claimed_by IS NULL OR claimed_by NOT IN (`+sqlSendersAlive+`))`, presenceClass)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		_, err = tx.Exec(ctx, `UPDATE sends SET claimed_by = NULL WHERE status = 'queued' AND claimed_by IS NOT NULL AND claimed_by NOT IN (`+sqlSendersAlive+`)`, presenceClass)
		return err
	})
	return n, err
}

// ClaimedElsewhere implements campaigns.SendStore: the sends due by now
// that other senders still alive have claimed, and when the last of their
// leases expires if they stop renewing them.
func (s *Store) ClaimedElsewhere(ctx context.Context, holder string, now time.Time) (int, time.Time, error) {
	c, err := queryRow[claimedElsewhere](ctx, s.db, `SELECT count(*) AS n,
		(SELECT max(expires_at) FROM leases l WHERE l.name LIKE 'sender:%' AND l.holder <> $1 AND l.expires_at > now()) AS until
		FROM sends WHERE status = 'queued' AND due_at <= $2 AND claimed_by IS NOT NULL AND claimed_by <> $1`, holder, now)
	if err != nil || c.Until == nil {
		return c.N, time.Time{}, translate(err, "counting sends claimed by other senders")
	}
	return c.N, *c.Until, nil
}

// claimedElsewhere is how many due sends other senders hold, and until
// when their leases last.
type claimedElsewhere struct {
	N     int        `db:"n"`
	Until *time.Time `db:"until"`
}

// ReleaseClaims releases holder's claims on sends it has not started. It
// is called between passes, when none of holder's messages is on the
// wire: a send holder still has as 'sending' is one whose end an earlier
// pass could not record (the database went away meanwhile), in doubt like
// those of a stopped sender, so it is marked 'unknown' and never resent.
func (s *Store) ReleaseClaims(ctx context.Context, holder string) error {
	if _, err := s.db.Exec(ctx, `UPDATE sends SET status = 'unknown', claimed_by = NULL, updated_at = now(),
		smtp_response = 'in doubt: the database went away before this message''s end was recorded; not resent'
		WHERE status = 'sending' AND claimed_by = $1`, holder); err != nil {
		return translate(err, "recovering sends in doubt")
	}
	_, err := s.db.Exec(ctx, `UPDATE sends SET claimed_by = NULL WHERE status = 'queued' AND claimed_by = $1`, holder)
	return translate(err, "releasing claims")
}
