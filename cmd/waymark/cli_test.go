package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version", "-version"} {
		out, _, err := runWaymark(t, "", arg)
		if err != nil || !strings.HasPrefix(out, "waymark ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("%s: %q, %v; want the version and build", arg, out, err)
		}
	}
}

// Each command's -h shows its purpose and only its own flags, and exits 0.
func TestCommandHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		want     []string
		mustNot  []string
		wantExit bool // a non-nil error expected
	}{
		{[]string{"stages", "-h"}, []string{"usage: waymark stages [--json]", "how many contacts are in each stage", "-json", "-database-url"}, []string{"-smtp-url", "-dkim-domain", "-write-key"}, false},
		{[]string{"help", "stages"}, []string{"usage: waymark stages [--json]", "-json"}, []string{"-smtp-url"}, false},
		{[]string{"keys", "create", "-h"}, []string{"usage: waymark keys", "-name", "-read-only"}, []string{"-smtp-url", "-cron"}, false},
		{[]string{"keys", "-h"}, []string{"usage: waymark keys create --name NAME | list | revoke KEY", "management API keys"}, nil, false},
		{[]string{"tick", "--help"}, []string{"usage: waymark tick", "-as-of", "-smtp-url", "-from"}, []string{"-http-addr", "-cron", "-write-key"}, false},
		{[]string{"sequences", "pause", "-h"}, []string{"usage: waymark sequences", "pause a sequence"}, []string{"-smtp-url"}, false},
		{[]string{"-h"}, []string{"usage: waymark COMMAND", "stages", "version", "list", "suppressions"}, nil, false},
	}
	for _, tt := range tests {
		out, errOut, err := runWaymark(t, "", tt.args...)
		if (err != nil) != tt.wantExit {
			t.Errorf("%v: err = %v", tt.args, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: help lacks %q:\n%s%s", tt.args, w, out, errOut)
			}
		}
		for _, w := range tt.mustNot {
			if strings.Contains(out, w+" ") {
				t.Errorf("%v: help shows another command's flag %q:\n%s", tt.args, w, out)
			}
		}
	}
}

func TestMistypedCommandGetsASuggestion(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"stags":         `unknown command "stags"; did you mean "stages"?`,
		"imprt x":       `did you mean "import"?`,
		"keys creat":    `keys: unknown subcommand "creat"; did you mean "create"?`,
		"list tempates": `did you mean "templates"?`,
	} {
		_, _, err := runWaymark(t, "", strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", args, err, want)
		}
	}
}

// Commands say which database they read.
func TestCommandsSayWhichDatabase(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	name := dbNameOf(t, url)
	out, errOut, err := runWaymark(t, url, "stages")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("waymark: database %q on ", name); !strings.Contains(errOut, want) {
		t.Errorf("stages: stderr %q lacks %q", errOut, want)
	}
	if !strings.Contains(out, "total") {
		t.Errorf("stages printed %q", out)
	}
}

// apply --dry-run creates no database and runs no migration.
func TestDryRunCreatesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.Clone(t)
	journey := writeFile(t, "journey.yaml", testJourney)
	admin, err := pgx.Connect(ctx, withDB(t, url, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	missing := fmt.Sprintf("waymark_missing_%d", os.Getpid())
	_, _, err = runWaymark(t, withDB(t, url, missing), "apply", "-f", journey, "--dry-run")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("database %q", missing)) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("dry run on a missing database: err = %v", err)
	}
	var exists bool
	_ = admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, missing).Scan(&exists)
	if exists {
		t.Fatalf("the dry run created database %s", missing)
	}

	// An empty database is not migrated by a dry run.
	empty := fmt.Sprintf("waymark_empty_%d", os.Getpid())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+empty); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+empty+" WITH (FORCE)") })
	_, _, err = runWaymark(t, withDB(t, url, empty), "apply", "-f", journey, "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "run waymark migrate first") {
		t.Fatalf("dry run on an empty database: err = %v", err)
	}
	pool, err := pgxpool.New(ctx, withDB(t, url, empty))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var tables int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables)
	if tables != 0 {
		t.Fatalf("the dry run created %d tables", tables)
	}
}

const pauseJourney = `tones:
  - tone: friendly
templates:
  - {name: welcome, subject: Welcome, text: Hello}
  - {name: tips, subject: Tips, text: Tip one}
sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: welcome}
  - name: tips
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: tips}
sending:
  frequency_cap: {max: 10, per: 1d}
  quiet_hours: {from: "00:00", to: "00:00"}
`

// A paused sequence's queued emails wait (none dropped) and go out when it
// is resumed; while paused it enrols nobody; other sequences go on.
func TestPauseAndResumeASequence(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	smtp := smtptest.Start(t)
	noSMTP := map[string]string{"DATABASE_URL": url}
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", smtp.Addr()), "WAYMARK_FROM": "Shop <news@shop.example>"}
	mustRun := func(env map[string]string, args ...string) string {
		t.Helper()
		out, errOut, err := runWith(t, env, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out
	}
	mustRun(noSMTP, "import", writeFile(t, "a.csv", "userId,email\nann,ann@example.com\n"))
	mustRun(noSMTP, "apply", "-f", writeFile(t, "journey.yaml", pauseJourney))
	mustRun(noSMTP, "tick") // enrols ann in both, nothing sent
	out := mustRun(noSMTP, "sequences", "pause", "welcome")
	if !strings.Contains(out, "its 1 queued email wait") {
		t.Errorf("pause said %q", out)
	}
	mustRun(noSMTP, "import", writeFile(t, "b.csv", "userId,email\nbo,bo@example.com\n"))
	mustRun(env, "tick")
	if got := received(t, smtp.Messages()); strings.Join(got, "\n") != "ann@example.com: Tips\nbo@example.com: Tips" {
		t.Fatalf("while welcome is paused, received:\n%s\nwant only the tips", strings.Join(got, "\n"))
	}
	if out := mustRun(noSMTP, "sequences", "list"); !strings.Contains(out, "paused since") || !strings.Contains(out, "1 email waiting") {
		t.Errorf("sequences list: %q", out)
	}
	out = mustRun(noSMTP, "sequences", "resume", "welcome")
	if !strings.Contains(out, "1 waiting email was released") {
		t.Errorf("resume said %q", out)
	}
	mustRun(env, "tick") // ann's waiting welcome, and bo enrolled now
	got := received(t, smtp.Messages())
	want := "ann@example.com: Tips\nann@example.com: Welcome\nbo@example.com: Tips\nbo@example.com: Welcome"
	if strings.Join(got, "\n") != want {
		t.Fatalf("after resume, received:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
	if _, _, err := runWith(t, noSMTP, "sequences", "pause", "welcom"); err == nil || !strings.Contains(err.Error(), `no sequence "welcom"`) {
		t.Errorf("pausing a missing sequence: %v", err)
	}
}

func TestSuppressionsAndLists(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, err := runWaymark(t, url, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out
	}
	if out := mustRun("suppressions", "add", "Ann@Example.com", "--detail", "asked by phone"); !strings.Contains(out, "suppressed ann@example.com") {
		t.Errorf("add: %q", out)
	}
	if out := mustRun("suppressions", "list"); !strings.Contains(out, "ann@example.com") || !strings.Contains(out, "asked by phone") {
		t.Errorf("list: %q", out)
	}
	mustRun("suppressions", "remove", "ann@example.com")
	if out := mustRun("suppressions", "list"); !strings.Contains(out, "empty") {
		t.Errorf("list after remove: %q", out)
	}
	if _, _, err := runWaymark(t, url, "suppressions", "add", "not-an-address"); err == nil {
		t.Error("a bad address was suppressed")
	}

	mustRun("apply", "-f", writeFile(t, "journey.yaml", campaignJourney))
	for what, want := range map[string][]string{
		"rules":     {"1  customer", "awareness, consideration, decision → retention"},
		"templates": {"welcome", "we-miss-you", "empathetic"},
		"tones":     {"1  empathetic", "2  friendly    (the default)"},
		"sequences": {"welcome", "entering awareness", "1. welcome after 0h; 2. tips after 2d", "running"},
		"offers":    {"loyal", "generated"},
	} {
		out := mustRun("list", what)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("list %s lacks %q:\n%s", what, w, out)
			}
		}
	}
}

func dbNameOf(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

func withDB(t *testing.T, url, name string) string {
	t.Helper()
	u, err := pgserver.WithDatabase(url, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
