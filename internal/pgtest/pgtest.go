// Package pgtest gives tests a real, migrated PostgreSQL database.
//
// One template database is migrated per schema (its name carries a hash of
// the migrations) and reused; each test process clones it once for tests
// that run in a rolled-back transaction (Tx), and tests that need committed
// data or several connections get a fresh clone of their own (Clone).
//
// Under CI=true a test that cannot reach PostgreSQL fails; elsewhere it is
// skipped with instructions.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/migrations"
)

var (
	setupOnce sync.Once
	serverURL string // URL of the server, database "postgres"
	tmplName  string
	setupErr  error

	sharedOnce sync.Once
	sharedPool *pgxpool.Pool
	sharedErr  error
)

func setup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	u, err := pgserver.Resolve(ctx, os.Getenv("DATABASE_URL"), pgserver.DefaultDataDir(), log)
	if err != nil {
		setupErr = err
		return
	}
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		setupErr = err
		return
	}
	cfg.Database = "postgres"
	serverURL = mustWithDatabase(u, "postgres")
	ms, err := migrations.All()
	if err != nil {
		setupErr = err
		return
	}
	h := sha256.New()
	for _, m := range ms {
		fmt.Fprintf(h, "%d\x00%s\x00", m.Version, m.SQL)
	}
	tmplName = "waymark_tmpl_" + hex.EncodeToString(h.Sum(nil))[:12]
	setupErr = ensureTemplate(ctx, cfg)
}

// ensureTemplate creates and migrates the template database once per schema,
// guarded by an advisory lock so parallel test processes do not race.
func ensureTemplate(ctx context.Context, cfg *pgx.ConnConfig) error {
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(7242)"); err != nil {
		return err
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock(7242)") //nolint:errcheck
	var ok bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", tmplName).Scan(&ok); err != nil {
		return err
	}
	dropStale(ctx, admin)
	if ok {
		return nil
	}
	building := tmplName + "_building"
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return fmt.Errorf("creating template database: %w", err)
	}
	tcfg := cfg.Copy()
	tcfg.Database = building
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return err
	}
	pcfg.ConnConfig = tcfg
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	_, err = migrations.Apply(ctx, pool)
	pool.Close()
	if err != nil {
		return fmt.Errorf("migrating template database: %w", err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+tmplName); err != nil {
		return err
	}
	_, err = admin.Exec(ctx, "ALTER DATABASE "+tmplName+" WITH is_template = true")
	return err
}

// dropStale drops clones left behind by test processes that have exited
// (clone names carry the creating process's id).
func dropStale(ctx context.Context, admin *pgx.Conn) {
	rows, err := admin.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'waymark\\_t\\_%'")
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		var pid int
		if _, err := fmt.Sscanf(strings.TrimPrefix(n, "waymark_t_"), "%d_", &pid); err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // still running
		}
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
	}
}

func need(t testing.TB) {
	t.Helper()
	setupOnce.Do(setup)
	if setupErr == nil {
		return
	}
	msg := fmt.Sprintf("PostgreSQL is not reachable: %v\nStart it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start (or set DATABASE_URL)", setupErr)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// createClone makes a new database from the template and returns its URL.
func createClone(ctx context.Context) (name, url string, err error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name = fmt.Sprintf("waymark_t_%d_%s", os.Getpid(), hex.EncodeToString(b[:]))
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return "", "", err
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", "", err
	}
	defer admin.Close(context.Background())
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmplName)
		if err == nil || attempt == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond) // template briefly in use by a concurrent clone
	}
	if err != nil {
		return "", "", fmt.Errorf("cloning the template database: %w", err)
	}
	return name, mustWithDatabase(serverURL, name), nil
}

func dropDatabase(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return
	}
	defer admin.Close(context.Background())
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// Clone gives the test a fresh database of its own, cloned from the migrated
// template, and its connection string; it is dropped when the test ends.
// Use it for committed data, several connections, or subprocesses.
func Clone(t testing.TB) string {
	t.Helper()
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, u, err := createClone(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropDatabase(name) })
	return u
}

// Pool gives the test a pool on a fresh clone (see Clone).
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := Clone(t)
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Tx gives the test a transaction on a migrated database shared by this test
// process; it is rolled back when the test ends, so nothing leaks between
// tests.
func Tx(t testing.TB) pgx.Tx {
	t.Helper()
	need(t)
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, u, err := createClone(ctx)
		if err != nil {
			sharedErr = err
			return
		}
		// The shared clone lives as long as the test process; a later
		// process drops it (dropStale) once this one is gone.
		sharedPool, sharedErr = pgxpool.New(context.Background(), u)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	ctx := context.Background()
	tx, err := sharedPool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// mustWithDatabase returns connString naming database db instead.
func mustWithDatabase(connString, db string) string {
	u, err := pgserver.WithDatabase(connString, db)
	if err != nil {
		panic("pgtest: " + err.Error())
	}
	return u
}
