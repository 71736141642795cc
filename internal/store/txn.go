package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// txn is one ingest transaction. On a pool it holds a connection of its
// own and sends BEGIN and COMMIT in the round trips of the statements next
// to them; on anything else (a test's transaction) it nests with Begin.
type txn struct {
	conn  *pgxpool.Conn
	tx    pgx.Tx
	begun bool
	ended bool
	// generic: the transaction's statements run their cached generic
	// plans (a few messages; see genericBelow).
	generic bool
}

// genericBelow is the number of messages under which an ingest
// transaction runs its statements' generic plans. For the small arrays of
// a single /v1/track call PostgreSQL plans each statement anew (a custom
// plan looks cheaper than the cached one), and that planning was ten
// times the statements' execution: 0.46 of PostgreSQL's 1.04 cores at
// 1,000 calls a second (pg_stat_statements with track_planning). Every
// statement of the transaction lists the ids it reads and runs with
// sequential scans off, so the generic plan is the index plan the custom
// one would be; large batches keep their custom plans, whose planning
// their rows pay for.
const genericBelow = copyMin

func (s *Store) begin(ctx context.Context) (*txn, error) {
	if p, ok := s.db.(*pgxpool.Pool); ok {
		c, err := p.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		return &txn{conn: c}, nil
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &txn{tx: tx}, nil
}

// run sends the statements queue queues in one round trip (with BEGIN
// before them, the first time, and COMMIT after them if commit), and reads
// their results with read.
func (t *txn) run(ctx context.Context, commit bool, queue func(b *pgx.Batch), read func(br pgx.BatchResults) error) error {
	b := &pgx.Batch{}
	lead := 0
	if t.conn != nil && !t.begun {
		// Every statement of an ingest transaction reads the rows of
		// the ids it lists: no plan should hash a whole table to join
		// it with a list (merging traits into contacts did, on a table
		// whose statistics lagged).
		b.Queue("begin")
		b.Queue(sqlSeqScanOff)
		lead = 2
		if t.generic {
			b.Queue(sqlGenericPlans)
			lead++
		}
	}
	t.begun = true
	queue(b)
	if commit && t.conn != nil {
		b.Queue("commit")
	}
	if b.Len() == 0 {
		if commit {
			t.ended = true
			return t.tx.Commit(ctx)
		}
		return nil
	}
	var br pgx.BatchResults
	if t.conn != nil {
		br = t.conn.SendBatch(ctx, b)
	} else {
		br = t.tx.SendBatch(ctx, b)
	}
	err := func() error {
		for i := 0; i < lead; i++ {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if err := read(br); err != nil {
			return err
		}
		if commit && t.conn != nil {
			if _, err := br.Exec(); err != nil {
				return err
			}
			t.ended = true
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && commit && t.tx != nil {
		err = t.tx.Commit(ctx)
		t.ended = true
	}
	return err
}

// close rolls back what was not committed and gives the connection back.
func (t *txn) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if t.conn != nil {
		if t.begun && !t.ended {
			// A connection left inside a transaction is destroyed by the
			// pool on release, so a failed rollback is harmless.
			_, _ = t.conn.Exec(ctx, "rollback")
		}
		t.conn.Release()
		return
	}
	if !t.ended {
		_ = t.tx.Rollback(ctx)
	}
}

// copyFrom COPYs src into events (after BEGIN, if not begun yet).
func (t *txn) copyFrom(ctx context.Context, src pgx.CopyFromSource) error {
	if t.conn != nil {
		if !t.begun {
			if _, err := t.conn.Exec(ctx, "begin"); err != nil {
				return err
			}
			t.begun = true
		}
		_, err := t.conn.CopyFrom(ctx, pgx.Identifier{"events"}, eventColumns, src)
		return err
	}
	_, err := t.tx.CopyFrom(ctx, pgx.Identifier{"events"}, eventColumns, src)
	return err
}
