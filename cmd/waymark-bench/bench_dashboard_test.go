package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/pgtest"
)

// The dashboard benchmark on a small database: it builds its data, and
// every page and endpoint answers what it should (a wrong status fails the
// run) through a real login; then it drops its database. No timing is
// asserted.
func TestBenchDashboardSmall(t *testing.T) {
	t.Parallel()
	server := pgtest.Clone(t)
	name := fmt.Sprintf("waymark_t_dash_%d", os.Getpid())
	out, errOut, err := runBench(t, server, "dashboard", "-db", name, "-contacts", "300", "-events", "6000",
		"-rounds", "1", "-random-contacts", "2", "-journey", "../../examples/journey.yaml")
	if err != nil {
		t.Fatalf("bench dashboard: %v\n%s\n%s", err, out, errOut)
	}
	for _, want := range []string{
		"history: 300 contacts", "rollups: full refresh", "overview", "journey health", "contact's journey",
		"contacts: search by email", "rule editor", "reports by template", "reports as CSV, by tone", "reports: attribution", "refresh after a busy half minute (", "api: reports: holdouts", "api: timeline", "every page and endpoint within 200ms", "dropped database " + name,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	conn, err := pgx.Connect(context.Background(), server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left bool
	if err := conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&left); err != nil || left {
		t.Errorf("database %s left behind (%v)", name, err)
	}
	// Neither the database the connection names nor one that is not a
	// benchmark's is filled or dropped.
	scfg, err := pgx.ParseConfig(server)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = runBench(t, server, "dashboard", "-db", scfg.Database, "-journey", "../../examples/journey.yaml")
	if err == nil || !strings.Contains(err.Error(), "the database the connection names") {
		t.Errorf("bench dashboard on DATABASE_URL's database: %v", err)
	}
	other := name + "_other"
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+other); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "DROP DATABASE IF EXISTS "+other+" WITH (FORCE)") //nolint:errcheck
	otherURL, err := pgserver.WithDatabase(server, other)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := pgx.Connect(ctx, otherURL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = oc.Exec(ctx, "CREATE TABLE contacts (id bigint PRIMARY KEY); INSERT INTO contacts VALUES (1)")
	oc.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = runBench(t, server, "dashboard", "-db", other, "-journey", "../../examples/journey.yaml")
	if err == nil || !strings.Contains(err.Error(), "is not a benchmark's") {
		t.Errorf("bench dashboard on a database that is not a benchmark's: %v", err)
	}
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, other).Scan(&left); err != nil || !left {
		t.Errorf("database %s dropped (%v)", other, err)
	}
	// The database it would copy must exist.
	_, _, err = runBench(t, server, "dashboard", "-db", name, "-copy-from", "no_such_database_here", "-journey", "../../examples/journey.yaml")
	if err == nil || !strings.Contains(err.Error(), "no_such_database_here") {
		t.Errorf("copying a missing database: %v", err)
	}
}

// runBench runs waymark-bench with args against the database at
// databaseURL.
func runBench(t *testing.T, databaseURL string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"DATABASE_URL": databaseURL}
	err = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}
