package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
)

// factsFault is the real store, whose LoadFacts fails — as a facts query
// did on an event's 1e400 revenue — whenever the contact bad is among the
// contacts loaded (by id, or in a page of a sweep).
type factsFault struct {
	*store.Store
	bad int64
}

func (f factsFault) LoadFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	out, err := f.Store.LoadFacts(ctx, q)
	for _, c := range out {
		if c.ID == f.bad {
			return nil, fmt.Errorf("loading facts: contact %d: %w", c.ID, lifecycle.ErrContactData)
		}
	}
	return out, err
}

// Issue 23: one contact whose facts cannot be loaded, or whose stage move
// PostgreSQL refuses, used to fail the whole batch — the sweep every
// minute, and event-driven evaluation retrying the same set every second
// while other contacts joined it. Now the batch is done again in halves;
// the failing contacts are parked with the reason and every other contact
// moves; a dry run parks nobody; once the cause is gone the next sweep
// moves them and unparks them.
func TestOneFailingContactIsParkedAndTheOthersMove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	applyJourney(t, s, ladder)
	now := clock.Now().Truncate(time.Microsecond)
	const n = 60
	var msgs []ingest.Message
	for i := range n {
		m := track(fmt.Sprint("c", i), "", fmt.Sprint("m", i), "page_viewed", "")
		m.Timestamp = now.Add(-time.Hour)
		msgs = append(msgs, m)
	}
	mustIngest(t, s, msgs...)
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = contactOf(t, pool, fmt.Sprint("u:c", i)).ID
	}
	badFacts, badMove := ids[17], ids[41]
	// A trigger refusing one contact's stage move: a real PostgreSQL
	// error (P0001) on one row of the batch's statement.
	if _, err := pool.Exec(ctx, fmt.Sprintf(`
CREATE FUNCTION refuse_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused for contact %%', NEW.contact_id; END $$;
CREATE TRIGGER refuse_move BEFORE INSERT ON transitions FOR EACH ROW WHEN (NEW.contact_id = %d) EXECUTE FUNCTION refuse_move()`, badMove)); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	faulty := lifecycle.NewEngine(factsFault{s, badFacts}, log)
	faulty.BatchSize, faulty.SweepBatchSize = 16, 25

	rules, err := lifecycle.LoadRules(mustRules(t, s))
	if err != nil {
		t.Fatal(err)
	}
	effects, _, err := faulty.DryRun(ctx, rules, now)
	if err != nil || len(effects) != 1 || effects[0].Contacts != n-1 {
		t.Fatalf("dry run: %v, %+v; want %d would move (all but the one whose facts fail)", err, effects, n-1)
	}
	if got := count(t, pool, `SELECT count(*) FROM parked_contacts`); got != 0 {
		t.Fatalf("a dry run parked %d contacts", got)
	}

	parked := func() map[int64]string {
		t.Helper()
		m, err := s.ParkedContacts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Event-driven evaluation of every contact, then a sweep.
	touched := make([]lifecycle.Touched, n)
	for i, id := range ids {
		touched[i] = lifecycle.Touched{ID: id, Names: []string{"page_viewed"}}
	}
	st, err := faulty.Evaluate(ctx, touched, now)
	if err != nil {
		t.Fatalf("event-driven evaluation failed for everyone: %v", err)
	}
	if st.Moved != n-2 || st.Errors != 2 {
		t.Fatalf("event-driven: %+v, want %d moved and 2 errors", st, n-2)
	}
	p := parked()
	if len(p) != 2 || !strings.Contains(p[badFacts], "loading its facts") || !strings.Contains(p[badMove], "refused for contact") {
		t.Fatalf("parked %v, want contacts %d (facts) and %d (move) with their reasons", p, badFacts, badMove)
	}
	if got := count(t, pool, `SELECT count(*) FROM contacts WHERE stage = 'consideration'`); got != n-2 {
		t.Fatalf("%d contacts moved, want %d", got, n-2)
	}
	st, err = faulty.Sweep(ctx, now)
	if err != nil || st.Moved != 0 || st.Errors != 2 {
		t.Fatalf("sweep: %+v, %v; want no error, 2 failing contacts again, nothing left to move", st, err)
	}
	if c, err := s.ContactParking(ctx, badMove); err != nil || c == nil || !strings.Contains(c.Reason, "refused") {
		t.Fatalf("the contact's parking: %+v, %v", c, err)
	}

	// The causes gone, the next sweep moves and unparks them.
	if _, err := pool.Exec(ctx, `DROP TRIGGER refuse_move ON transitions`); err != nil {
		t.Fatal(err)
	}
	healthy := lifecycle.NewEngine(s, log)
	st, err = healthy.Sweep(ctx, now)
	if err != nil || st.Moved != 2 || st.Errors != 0 {
		t.Fatalf("sweep after the fix: %+v, %v; want the 2 parked contacts moved", st, err)
	}
	if p := parked(); len(p) != 0 {
		t.Fatalf("still parked after a clean sweep: %v", p)
	}
}

// A rule that cannot be evaluated on one contact's traits stops that
// contact's settling alone, and parks it with the reason until its data
// fits again.
func TestRuleErrorOnOneContactParksIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	applyJourney(t, s, `rules:
  - {name: grown-up, from: [awareness], to: consideration, when: 'traits.age > 30'}
`)
	now := clock.Now().Truncate(time.Microsecond)
	var msgs []ingest.Message
	for i, age := range []string{`40`, `"old"`, `50`} {
		m := identify(fmt.Sprint("r", i), "", fmt.Sprint("r", i), `{"age": `+age+`}`, "")
		m.Timestamp = now.Add(-time.Hour)
		msgs = append(msgs, m)
	}
	mustIngest(t, s, msgs...)
	e := lifecycle.NewEngine(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	st, err := e.Sweep(ctx, now)
	if err != nil || st.Moved != 2 || st.Errors != 1 {
		t.Fatalf("sweep: %+v, %v; want 2 moved and 1 error", st, err)
	}
	bad := contactOf(t, pool, "u:r1").ID
	if p, err := s.ContactParking(ctx, bad); err != nil || p == nil || !strings.Contains(p.Reason, "evaluating its rules") {
		t.Fatalf("the contact whose age is text: parking %+v, %v", p, err)
	}
	if _, err := pool.Exec(ctx, `UPDATE contacts SET traits = '{"age": 35}' WHERE id = $1`, bad); err != nil {
		t.Fatal(err)
	}
	if st, err := e.Sweep(ctx, now); err != nil || st.Moved != 1 || st.Errors != 0 {
		t.Fatalf("sweep after its data was fixed: %+v, %v", st, err)
	}
	if p, err := s.ContactParking(ctx, bad); err != nil || p != nil {
		t.Fatalf("still parked: %+v, %v", p, err)
	}
}
