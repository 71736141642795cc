package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/pgtest"
)

// A second demo refuses to take a database another demo (or anyone) is
// using, instead of dropping it under the first one's feet.
func TestFreshDatabaseRefusesADatabaseInUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	server := pgtest.Clone(t) // any database on the test server
	name := fmt.Sprintf("waymark_demo_test_%d", os.Getpid())
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), mustWith(t, server, "postgres"))
		if err == nil {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = conn.Close(context.Background())
		}
	})

	first, err := FreshDatabase(ctx, server, name)
	if err != nil {
		t.Fatal(err)
	}
	// The first demo's data.
	conn, err := pgx.Connect(ctx, first.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE first_demo (n int)"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	stillThere := func(when string) {
		t.Helper()
		c, err := pgx.Connect(ctx, first.URL)
		if err != nil {
			t.Fatalf("%s: the first demo's database is gone: %v", when, err)
		}
		defer c.Close(ctx)
		var ok bool
		if err := c.QueryRow(ctx, "SELECT to_regclass('first_demo') IS NOT NULL").Scan(&ok); err != nil || !ok {
			t.Fatalf("%s: the first demo's data is gone (%v)", when, err)
		}
	}

	// A second demo while the first runs.
	_, err = FreshDatabase(ctx, server, name)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "another waymark demo is running on database \""+name+"\"") {
		t.Fatalf("second demo: err = %v, want ErrInUse naming the running demo", err)
	}
	stillThere("after a second demo")

	// The first demo has stopped, but someone still reads its database.
	first.Release()
	reader, err := pgx.Connect(ctx, first.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = FreshDatabase(ctx, server, name)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "1 session") {
		t.Fatalf("demo while a session reads the database: err = %v, want ErrInUse saying 1 session is connected", err)
	}
	stillThere("while another session reads it")
	_ = reader.Close(ctx)

	// Nobody: a fresh, empty database.
	again, err := FreshDatabase(ctx, server, name)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Release()
	c, err := pgx.Connect(ctx, again.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var gone bool
	if err := c.QueryRow(ctx, "SELECT to_regclass('first_demo') IS NULL").Scan(&gone); err != nil || !gone {
		t.Fatalf("the fresh database still has the old demo's table (%v)", err)
	}
}

// With DATABASE_URL set, two demos never simulate into one database.
func TestClaimDatabaseOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := pgtest.Clone(t)
	first, err := ClaimDatabase(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ClaimDatabase(ctx, u); !errors.Is(err, ErrInUse) {
		t.Fatalf("second claim: err = %v, want ErrInUse", err)
	}
	first.Release()
	second, err := ClaimDatabase(ctx, u)
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	second.Release()
}

func mustWith(t *testing.T, connString, db string) string {
	t.Helper()
	u, err := pgserver.WithDatabase(connString, db)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
