package demo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/waymark/waymark/internal/pgserver"
)

// Database is the database the demo uses when DATABASE_URL is not set: its
// own, recreated on every run, so a demo never mixes with real data or
// with an earlier demo.
const Database = "waymark_demo"

// ErrInUse is returned when another demo, or another session, is using the
// database a demo would take.
var ErrInUse = errors.New("demo: the database is in use")

// Claim is a demo's hold on its database: a session-level advisory lock,
// held by a connection of its own until Release, so a second demo refuses
// to start instead of dropping the first one's data. A demo that dies
// releases it with its connection.
type Claim struct {
	conn *pgx.Conn
	// URL is the connection string naming the claimed database.
	URL string
}

// Release lets another demo take the database.
func (c *Claim) Release() {
	if c != nil && c.conn != nil {
		// Unlocked before closing: the server ends a closed session a
		// moment later, and the next demo must not find it still held.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = c.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
		cancel()
		_ = c.conn.Close(context.Background())
		c.conn = nil
	}
}

// lockKey is the first key of the demo's advisory locks (the second is
// hashtext of the database's name).
const lockKey = 0x57_4d_44 // "WMD"

// FreshDatabase claims the database named name on the server of
// connString (see Claim), drops it and creates it again, empty. It refuses
// with ErrInUse, changing nothing, while another demo holds the claim or
// any other session is connected to the database (a dashboard's `waymark
// serve`, psql): their data is not the demo's to drop.
func FreshDatabase(ctx context.Context, connString, name string) (*Claim, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("demo: parsing the database URL: %w", err)
	}
	cfg.Database = "postgres"
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("demo: connecting to PostgreSQL at %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	claim := &Claim{conn: conn}
	ok := false
	defer func() {
		if !ok {
			claim.Release()
		}
	}()
	if err := lock(cctx, conn, name, cfg); err != nil {
		return nil, err
	}
	id := pgx.Identifier{name}.Sanitize()
	// (PostgreSQL itself waits up to 5 s for the sessions of a demo that
	// has just stopped to end before it says the database is in use.)
	if _, err := conn.Exec(cctx, "DROP DATABASE IF EXISTS "+id); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55006" { // object_in_use
			return nil, fmt.Errorf("%w: database %q on %s:%d has %s connected to it; the demo drops and recreates it, so close them first, or give the demo an empty database of its own with DATABASE_URL",
				ErrInUse, name, cfg.Host, cfg.Port, users(cctx, conn, name))
		}
		return nil, fmt.Errorf("demo: dropping the previous demo database %s: %w", name, err)
	}
	if _, err := conn.Exec(cctx, "CREATE DATABASE "+id); err != nil {
		return nil, fmt.Errorf("demo: creating database %s: %w", name, err)
	}
	if claim.URL, err = pgserver.WithDatabase(connString, name); err != nil {
		return nil, err
	}
	ok = true
	return claim, nil
}

// ClaimDatabase claims the database connString names, as it is (the demo
// run with DATABASE_URL set): the lock is taken on a connection to that
// database, so two demos never simulate into one database at once.
func ClaimDatabase(ctx context.Context, connString string) (*Claim, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("demo: parsing the database URL: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("demo: connecting to PostgreSQL at %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	if err := lock(cctx, conn, cfg.Database, cfg); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return &Claim{conn: conn, URL: connString}, nil
}

// lock takes the demo's advisory lock for database name on conn, or says
// that another demo holds it.
func lock(ctx context.Context, conn *pgx.Conn, name string, cfg *pgx.ConnConfig) error {
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2))", lockKey, name).Scan(&got); err != nil {
		return fmt.Errorf("demo: locking database %s: %w", name, err)
	}
	if !got {
		return fmt.Errorf("%w: another waymark demo is running on database %q (%s:%d); stop it first (Ctrl-C where it runs), or give this one an empty database of its own with DATABASE_URL",
			ErrInUse, name, cfg.Host, cfg.Port)
	}
	return nil
}

// users says who is connected to database name: "2 sessions (psql, waymark)".
func users(ctx context.Context, conn *pgx.Conn, name string) string {
	var n int
	var apps string
	_ = conn.QueryRow(ctx, `SELECT count(*), coalesce(string_agg(DISTINCT coalesce(nullif(application_name, ''), 'unnamed'), ', '), '')
FROM pg_stat_activity WHERE datname = $1`, name).Scan(&n, &apps)
	s := fmt.Sprintf("%d sessions", n)
	if n == 1 {
		s = "1 session"
	}
	if apps != "" {
		s += " (" + apps + ")"
	}
	return s
}
