package bench

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/waymark/waymark/internal/pgserver"
)

// Database is a scratch database created for one benchmark run.
type Database struct {
	Name   string
	URL    string // connection string of the scratch database
	server string // connection string of the database used to create it
}

// CreateDatabase creates a fresh database called name on the server that
// serverURL reaches (dropping a leftover of the same name first) and
// returns it. Drop removes it.
func CreateDatabase(ctx context.Context, serverURL, name string) (*Database, error) {
	u, err := pgserver.WithDatabase(serverURL, name)
	if err != nil {
		return nil, err
	}
	d := &Database{Name: name, URL: u, server: serverURL}
	err = createDatabase(ctx, serverURL, name)
	if err != nil {
		return nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	return d, nil
}

// Drop drops the database, disconnecting whoever is still connected.
func (d *Database) Drop(ctx context.Context) error {
	err := DropDatabase(ctx, d.server, d.Name)
	if err != nil {
		return fmt.Errorf("dropping database %s: %w", d.Name, err)
	}
	return nil
}

// Admin runs fn on a connection to the server (the database serverURL
// names), for at most timeout.
func Admin(ctx context.Context, serverURL string, timeout time.Duration, fn func(conn *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(conn)
}

// DropDatabase drops database name on the server, disconnecting whoever
// is still connected.
func DropDatabase(ctx context.Context, serverURL, name string) error {
	return Admin(ctx, serverURL, time.Minute, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	})
}

// createDatabase drops database name on the server if it exists, and
// creates it anew.
func createDatabase(ctx context.Context, serverURL, name string) error {
	return Admin(ctx, serverURL, time.Minute, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	})
}

// DefaultName is the scratch database's name for this process.
func DefaultName(kind string) string {
	return fmt.Sprintf("waymark_bench_%d_%s", os.Getpid(), kind)
}

// CountEvents returns the number of rows in table.
func CountEvents(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, table string) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting %s: %w", table, err)
	}
	return n, nil
}

// Checkpoint asks the server for a checkpoint, so that a timed load does
// not pay for the dirty pages of the one before. It needs superuser or
// pg_checkpoint; without them it does nothing but say so.
//
// It also syncs the kernel's dirty pages: what the kernel still had to
// write back (an import's generated files, a dropped database) it wrote
// during the next measurement, delaying its commits' WAL flushes (bench
// import then bench track: p99 10.75 ms without, 8.32 ms with). It returns
// the error of the CHECKPOINT (which needs a superuser), if any.
func Checkpoint(ctx context.Context, connString string) error {
	defer syscall.Sync()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CHECKPOINT")
	return err
}

// BareTable is the table the bare COPY loads: the events table's columns and
// types, without its primary key, index, check and defaults.
const BareTable = "bench_bare_events"

const sqlCreateBare = `CREATE TABLE ` + BareTable + ` (
    contact_id  bigint,
    message_id  text,
    kind        text,
    name        text,
    properties  jsonb,
    context     jsonb,
    occurred_at timestamptz,
    received_at timestamptz)`

// IndexedTable is a copy of the events table with its primary key, index,
// check and defaults: COPY into it is the floor for any way of loading
// events that keeps those indexes.
const IndexedTable = "bench_indexed_events"

const sqlCreateIndexed = `CREATE TABLE ` + IndexedTable + ` (LIKE events INCLUDING ALL)`

// CopyBare creates BareTable and loads the COPY text file at path into it
// with `COPY ... FROM STDIN`, as psql's \copy does. It returns the rows
// loaded and the time the COPY took (the table's creation excluded).
func CopyBare(ctx context.Context, connString, path string) (int64, time.Duration, error) {
	return copyInto(ctx, connString, BareTable, sqlCreateBare, path)
}

// CopyIndexed does the same into IndexedTable.
func CopyIndexed(ctx context.Context, connString, path string) (int64, time.Duration, error) {
	return copyInto(ctx, connString, IndexedTable, sqlCreateIndexed, path)
}

func copyInto(ctx context.Context, connString, table, create, path string) (int64, time.Duration, error) {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return 0, 0, fmt.Errorf("COPY: connecting: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, create); err != nil {
		return 0, 0, fmt.Errorf("COPY: creating %s: %w", table, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	start := time.Now()
	// The columns the COPY text holds; others (events' ingest_xid) take
	// their defaults.
	tag, err := conn.PgConn().CopyFrom(ctx, f, "COPY "+table+" (contact_id, message_id, kind, name, properties, context, occurred_at, received_at) FROM STDIN")
	el := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("COPY %s: %w", table, err)
	}
	return tag.RowsAffected(), el, nil
}
