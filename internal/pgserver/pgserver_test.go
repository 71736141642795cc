package pgserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A fresh machine with PostgreSQL installed but not running: a private
// server is initialised and started from the installed binaries, answers,
// and is reused by the next caller.
func TestStartPrivate(t *testing.T) {
	t.Parallel()
	if _, err := FindBin("initdb"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir() + "/pg"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	u, err := StartPrivate(ctx, dir, port, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Stop(context.Background(), dir) })
	if err := EnsureDatabase(ctx, u); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "waymark" {
		t.Fatalf("database %q, %v", db, err)
	}
	conn.Close(ctx)
	// Started again: the running server is reused.
	again, err := StartPrivate(ctx, dir, port, log)
	if err != nil || again != u {
		t.Fatalf("second start: %q, %v", again, err)
	}
	if _, err := os.Stat(dir + "/PG_VERSION"); err != nil {
		t.Fatal(err)
	}
}
