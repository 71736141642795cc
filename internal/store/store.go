// Package store is Waymark's PostgreSQL adapter: all SQL lives here, and
// database errors become domain errors at one place (translate). It
// executes what the domain packages decide (whom a message belongs to,
// ingest.Decide; what a journey apply changes, journey.Diff; who may be
// enrolled, campaigns.Eligibility) and returns their types.
//
// Its files, by what they hold:
//
//   - ingestion: ingest.go (the transaction's steps), events.go,
//     identities.go, contacts.go (also the contacts the API reads), txn.go
//     (the pipelined transaction), import.go (bulk files);
//   - what rules read and do: facts.go, rollup.go and rollup_read.go (the
//     activity rollup a sweep reads), facts_range.go (the sweep
//     benchmark's other ways to compute them), moves.go, parked.go;
//   - the stored journey: journey.go (apply, its version), rules.go,
//     templates.go, sequences.go (with holds and settings), offers.go,
//     pause.go;
//   - campaigns at work: enrolments.go, sends.go, senders.go;
//   - what the contacts do and are owed: engagement.go, subscriptions.go,
//     suppressions.go, bounces.go, privacy.go (erasure, export of one
//     contact), export.go (of many);
//   - telling other systems: webhooks.go (endpoints, the outbox);
//   - conversions: conversions.go (the goal, attribution, a contact's
//     conversions);
//   - what the API and the dashboard read: auth.go (keys, sessions),
//     stats.go, timeline.go, counts.go; reports_refresh.go (the reports'
//     rollups, kept up to date) and reports.go (the reports read from
//     them);
//   - the installation: installation.go, lease.go, notify.go, database.go
//     (the server's databases).
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/lifecycle"
)

// DB is what the store runs queries on: a pool, a connection or a
// transaction (tests pass a transaction that is rolled back).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// beginner is a pool or connection that can start a transaction with
// options (a transaction cannot: a test's store nests in its snapshot).
type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Store implements the domain packages' storage interfaces on PostgreSQL.
type Store struct {
	db    DB
	users *userCache // ingestion's user id → contact (import.go)
}

// New returns a store on db.
func New(db DB) *Store { return &Store{db: db, users: newUserCache()} }

// Pool returns the pool the store runs on, if it runs on one.
func (s *Store) Pool() *pgxpool.Pool {
	p, _ := s.db.(*pgxpool.Pool)
	return p
}

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

// retryable reports whether err is a transient conflict between concurrent
// transactions (deadlock, serialization failure) worth retrying.
func retryable(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40P01" || pg.Code == "40001")
}

// uniqueViolation reports whether err is a unique constraint's violation.
func uniqueViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505"
}

// translate turns database errors into domain errors.
func translate(err error, doing string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) && contactDataClass(pg.Code) {
		err = contactData{err}
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// contactDataClass reports whether a SQLSTATE is caused by the data being
// processed rather than by the database's state: a data exception (22: a
// value that cannot be converted), an integrity constraint (23), a
// program limit (54: a value too large) or an exception raised by a
// function or trigger (P0).
func contactDataClass(code string) bool {
	switch code[:min(2, len(code))] {
	case "22", "23", "54", "P0":
		return true
	}
	return false
}

// contactData marks a database error caused by the data of the contacts
// worked on: errors.Is(err, lifecycle.ErrContactData) holds, so the engine
// and the sender retry the batch in halves and set aside the contact it
// fails on (lifecycle.Isolate).
type contactData struct{ error }

func (e contactData) Unwrap() []error { return []error{e.error, lifecycle.ErrContactData} }

// sqlSeqScanOff is for statements that join a list of ids with a table:
// their rows are found by key, one probe each. Left to itself, the
// planner hashed whole tables to join them with the list when their
// statistics lagged or a list's size was unknown (applying 700 stage
// moves among 100,000 contacts: 49 ms with the contacts table hashed,
// 4 ms by probes), on every pass of the reactor.
const sqlSeqScanOff = `SET LOCAL enable_seqscan = off`

// sqlGenericPlans makes a transaction's statements use their cached
// generic plans (see genericBelow); sqlGenericPlansBatch does it for a
// pipelined batch, one implicit transaction (SET LOCAL would do the same
// there but warn in the server's log, the batch being no explicit
// transaction block).
const (
	sqlGenericPlans      = `SET LOCAL plan_cache_mode = force_generic_plan`
	sqlGenericPlansBatch = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true)`
)

// sqlProbesOnly is sqlSeqScanOff with JIT compilation off, for statements
// that also scan a table no index serves (the webhook endpoints a stage
// move or an enrolment is queued for): the scan left to them costs
// enable_seqscan's penalty, which lifts the statement's estimate far
// above jit_above_cost, and compiling it then took 0.3-0.5 s for every
// call (applying 10 stage moves: 330 ms, 2 ms without; BenchmarkEnrol at
// 1,000 contacts: 576 µs an enrolment, 25.6 without). One statement of
// the simple protocol: not for a pipelined batch.
const sqlProbesOnly = sqlSeqScanOff + `; SET LOCAL jit = off`

// withSettings runs fn in a transaction after the SET LOCAL statements
// set.
func (s *Store) withSettings(ctx context.Context, set string, fn func(db DB) error) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, set); err != nil {
			return err
		}
		return fn(tx)
	})
}

// inTx runs fn in a transaction, retrying transient conflicts a few times.
func (s *Store) inTx(ctx context.Context, doing string, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = pgx.BeginFunc(ctx, s.db, fn)
		if err == nil || !retryable(err) {
			break
		}
	}
	return translate(err, doing)
}

// translateAs is translate, with a missing row reported as notFound (a
// domain package's error) as well as ErrNotFound.
func translateAs(err error, doing string, notFound error) error {
	err = translate(err, doing)
	if errors.Is(err, ErrNotFound) {
		return notFoundErr{notFound}
	}
	return err
}

// notFoundErr is a domain package's not-found error that is ErrNotFound
// too.
type notFoundErr struct{ error }

func (e notFoundErr) Unwrap() []error { return []error{e.error, ErrNotFound} }

// queryRow runs sql, which returns one row, and reads the row by name
// into a T (pgx.ErrNoRows when there is none).
func queryRow[T any](ctx context.Context, db DB, sql string, args ...any) (T, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	return pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[T])
}

// queryRows runs sql and reads its rows by name into Ts.
func queryRows[T any](ctx context.Context, db DB, sql string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[T])
}
