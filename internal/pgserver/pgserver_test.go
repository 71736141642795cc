package pgserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
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
	// The private server runs with the settings Waymark documents.
	if n, err := SharedBuffers(ctx, conn); err != nil || n != MinSharedBuffers {
		t.Errorf("private server's shared_buffers %d, %v; want %d", n, err, MinSharedBuffers)
	}
	if a := SettingsAdvice(ctx, conn); a != "" {
		t.Errorf("advice for the private server: %s", a)
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

// On the local server: shared_buffers in bytes as pg_settings counts it
// (in blocks), and advice exactly when that is below the minimum, naming
// the value and the fix.
func TestSettingsAdvice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, DefaultURL)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	defer conn.Close(ctx)
	n, err := SharedBuffers(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	var blocks, blockSize int64
	if err := conn.QueryRow(ctx, `SELECT setting::bigint, current_setting('block_size')::bigint FROM pg_settings WHERE name = 'shared_buffers'`).Scan(&blocks, &blockSize); err != nil {
		t.Fatal(err)
	}
	if n != blocks*blockSize {
		t.Fatalf("SharedBuffers %d, pg_settings %d blocks of %d bytes", n, blocks, blockSize)
	}
	advice := SettingsAdvice(ctx, conn)
	if below := n < MinSharedBuffers; below != (advice != "") {
		t.Fatalf("shared_buffers %d MB, advice %q", n>>20, advice)
	}
	if advice != "" && (!strings.Contains(advice, fmt.Sprintf("is %d MB", n>>20)) || !strings.Contains(advice, "ALTER SYSTEM SET shared_buffers = '256MB'")) {
		t.Errorf("advice %q does not name the value and the fix", advice)
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/waymark?sslmode=disable", "postgres://postgres@127.0.0.1:5432/bench_x?sslmode=disable"},
		{"postgresql://u:p@h/", "postgresql://u:p@h/bench_x"},
		{"host=127.0.0.1 user=postgres dbname=waymark", "host=127.0.0.1 user=postgres dbname=waymark dbname=bench_x"},
	} {
		got, err := WithDatabase(c.in, "bench_x")
		if err != nil || got != c.want {
			t.Errorf("WithDatabase(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
