package store_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// A pass whose facts were loaded before another pass moved the contact
// into a sequence's stage and enrolled it (a sweep racing the reactor)
// does not end the enrolment as "left the stage": its facts are older than
// the enrolment. Facts newer than the enrolment that show another stage
// do end it. (TestFaultPoisonedEventsNeverStopTheEngine found the race: 36
// of 2,000 big spenders' welcomes exited while they were in the stage.)
func TestStaleFactsDoNotEndAnEnrolment(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	ctx := context.Background()
	applyJourney(t, s, `sequences:
  - name: vip-welcome
    trigger: {enter_stage: decision}
    steps:
      - {after: 1h, template: vip}
templates:
  - {name: vip, subject: Thanks, text: Thank you.}
`)
	now := clock.Now().UTC().Truncate(time.Second)
	t0, t1, t2 := now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)
	if _, err := tx.Exec(ctx, `INSERT INTO contacts (id, email, stage, stage_entered_at, created_at) VALUES (1, 'a@example.com', 'decision', $1, $2)`, t1, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enrol(ctx, []campaigns.Enrolment{{ContactID: 1, Sequence: "vip-welcome", Version: 1, EnrolledAt: t2, StageSince: t1, FirstAfter: time.Hour, FirstTmpl: "vip", Trigger: campaigns.OnEnterStage}}); err != nil {
		t.Fatal(err)
	}
	r := campaigns.NewRunner(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := r.Needs(ctx); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		var st string
		_ = tx.QueryRow(ctx, `SELECT status FROM enrolments WHERE contact_id = 1`).Scan(&st)
		return st
	}
	// Stale: loaded when the contact was still in awareness (since t0).
	stale := []lifecycle.ContactFacts{{ID: 1, Facts: rule.Facts{Now: now, Stage: "awareness", StageEnteredAt: t0}}}
	if err := r.AfterBatch(ctx, stale, now, "sweep"); err != nil {
		t.Fatal(err)
	}
	if st := status(); st != "active" {
		t.Fatalf("after a pass with facts older than the enrolment: %s, want active", st)
	}
	// Fresh: the contact left decision after it was enrolled.
	fresh := []lifecycle.ContactFacts{{ID: 1, Facts: rule.Facts{Now: now, Stage: "retention", StageEnteredAt: now}}}
	if err := r.AfterBatch(ctx, fresh, now, "sweep"); err != nil {
		t.Fatal(err)
	}
	if st := status(); st != "exited" {
		t.Errorf("after the contact left the stage: %s, want exited", st)
	}
}
