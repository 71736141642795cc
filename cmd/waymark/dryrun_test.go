package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
)

// loopJourney's subscriber and lapsed rules both hold for a customer whose
// last order is over 30 days old: each pass moves them back.
const loopJourney = `rules:
  - name: shopping
    from: [awareness]
    to: decision
    when: ever("cart_updated")
  - name: subscriber
    from: [decision]
    to: retention
    when: ever("order_completed")
  - name: lapsed
    from: [retention]
    to: decision
    when: days_since("order_completed") > 30
tones:
  - tone: friendly
templates:
  - {name: welcome, subject: Welcome, text: Hello}
  - {name: thanks, subject: Thanks, text: "Your code: {{with .Offer}}{{.Code}}{{end}}"}
sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: welcome}
  - name: cart
    trigger: {event: cart_updated}
    steps:
      - {after: 1h, template: welcome}
offers:
  - name: regular
    when: ever("order_completed")
    share: 1
    cooldown: 30d
    template: thanks
`

// loopScene: ann (a customer whose order is 60 days old: she loops) and bo
// (one page view: stays in awareness), imported and never evaluated.
func loopScene(t *testing.T) (string, string) {
	t.Helper()
	url := pgtest.Clone(t)
	day := func(d int) string { return clock.Now().AddDate(0, 0, d).UTC().Format(time.RFC3339) }
	contacts := writeFile(t, "contacts.csv", "userId,email\nann,ann@example.com\nbo,bo@example.com\n")
	events := writeFile(t, "events.csv", "userId,event,timestamp\nann,cart_updated,"+day(-61)+"\nann,order_completed,"+day(-60)+"\nbo,page_viewed,"+day(-1)+"\n")
	for _, f := range []string{contacts, events} {
		if _, errOut, err := runWaymark(t, url, "import", f); err != nil {
			t.Fatalf("import %s: %v\n%s", f, err, errOut)
		}
	}
	return url, writeFile(t, "journey.yaml", loopJourney)
}

const annLoops = "rules subscriber (decision → retention) and lapsed (retention → decision) would move 1 contact back and forth on every pass (e.g. ann@example.com)"

// Rules that move contacts back and forth on every pass are shown by the
// dry run and refused by apply before anything is saved; history shows a
// contact that flips.
func TestApplyRefusesRulesThatLoop(t *testing.T) {
	t.Parallel()
	url, journey := loopScene(t)
	out, errOut, err := runWaymark(t, url, "apply", "-f", journey, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, annLoops) {
		t.Errorf("the dry run does not report the loop %q:\n%s", annLoops, out)
	}

	_, _, err = runWaymark(t, url, "apply", "-f", journey)
	if err == nil || !strings.Contains(err.Error(), "nothing was saved") || !strings.Contains(err.Error(), annLoops) {
		t.Fatalf("apply: err = %v, want a refusal naming the loop", err)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if n := queryInt(t, pool, `SELECT count(*) FROM rules`); n != 0 {
		t.Fatalf("%d rules stored after a refused apply", n)
	}

	// Applied anyway, the contact flips on every pass, and history says so.
	if _, errOut, err := runWaymark(t, url, "apply", "-f", journey, "--allow-loops"); err != nil {
		t.Fatalf("apply --allow-loops: %v\n%s", err, errOut)
	}
	for i := 0; i < 3; i++ {
		if _, errOut, err := runWaymark(t, url, "tick"); err != nil {
			t.Fatalf("tick: %v\n%s", err, errOut)
		}
	}
	out, errOut, err = runWaymark(t, url, "history", "ann")
	if err != nil {
		t.Fatalf("history: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "↺ back") || !strings.Contains(out, "flipping: rules") || !strings.Contains(out, "move this contact back and forth on every pass") {
		t.Errorf("history does not show the flipping contact:\n%s", out)
	}
	out, _, _ = runWaymark(t, url, "history", "bo")
	if strings.Contains(out, "flipping") {
		t.Errorf("history says bo flips:\n%s", out)
	}
}

// The dry run shows what each sequence and offer would do, and the
// contacts a sequence misses because the pass takes them out of its stage.
func TestDryRunShowsEnrolmentsAndRewards(t *testing.T) {
	t.Parallel()
	url, journey := loopScene(t)
	out, errOut, err := runWaymark(t, url, "apply", "-f", journey, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		// bo stays in awareness: welcomed.
		"welcome entering awareness 1 bo@example.com",
		"cart event \"cart_updated\" on events only",
		// ann leaves awareness in her first pass: never welcomed.
		"welcome: 1 contact moves through awareness, or out of it, in this pass before being enrolled, so it would never get welcome (e.g. ann@example.com)",
		"regular 1 1 ann@example.com",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("the dry run lacks %q:\n%s", want, out)
		}
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if n := queryInt(t, pool, `SELECT (SELECT count(*) FROM enrolments) + (SELECT count(*) FROM offer_draws) + (SELECT count(*) FROM sends)`); n != 0 {
		t.Fatalf("the dry run wrote %d enrolments, draws or sends", n)
	}
}
