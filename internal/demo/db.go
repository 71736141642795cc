package demo

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Database is the database the demo uses when DATABASE_URL is not set: its
// own, recreated on every run, so a demo never mixes with real data or
// with an earlier demo.
const Database = "waymark_demo"

// FreshDatabase drops the database named name on the server of
// connString and creates it again, empty; it returns connString naming it.
func FreshDatabase(ctx context.Context, connString, name string) (string, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return "", fmt.Errorf("demo: parsing the database URL: %w", err)
	}
	cfg.Database = "postgres"
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("demo: connecting to PostgreSQL at %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	defer conn.Close(context.Background())
	id := pgx.Identifier{name}.Sanitize()
	// FORCE ends the sessions of a demo still running against it.
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("demo: dropping the previous demo database %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+id); err != nil {
		return "", fmt.Errorf("demo: creating database %s: %w", name, err)
	}
	u, err := withDatabase(connString, name)
	if err != nil {
		return "", err
	}
	return u, nil
}

// withDatabase returns connString naming database name instead.
func withDatabase(connString, name string) (string, error) {
	if u, err := url.Parse(connString); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	if strings.Contains(connString, "=") {
		// keyword=value form: a later dbname wins.
		return connString + " dbname=" + name, nil
	}
	return "", fmt.Errorf("demo: %q is not a PostgreSQL connection string", connString)
}
