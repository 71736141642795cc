package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

const ladder = `rules:
  - {name: visitor, from: [awareness], to: consideration, when: 'count("page_viewed", "all") >= 1'}
  - {name: shopper, from: [consideration], to: decision, when: 'ever("cart_updated")'}
  - {name: buyer, from: [decision], to: retention, when: 'sum("order_completed", "revenue", "all") > 0'}
  - {name: fan, from: [retention], to: advocacy, when: 'distinct("order_completed", "sku", "all") >= 2'}
`

func applyJourney(t testing.TB, s *store.Store, src string) *journey.Journey {
	t.Helper()
	j, err := journey.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyJourney(context.Background(), j, false); err != nil {
		t.Fatal(err)
	}
	return j
}

// Two evaluators sweeping the same contacts at once: every contact settles
// once, its hops recorded once and in order.
func TestConcurrentSweepsApplyEachMoveOnce(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	applyJourney(t, s, ladder)
	var msgs []ingest.Message
	for i := 0; i < 300; i++ {
		u := fmt.Sprintf("c%d", i)
		msgs = append(msgs,
			track(u, "", u+"-1", "page_viewed", ""),
			track(u, "", u+"-2", "cart_updated", ""),
			track(u, "", u+"-3", "order_completed", `{"revenue": 10, "sku": "A"}`),
			track(u, "", u+"-4", "order_completed", `{"revenue": "5.50", "sku": "B"}`))
	}
	mustIngest(t, s, msgs...)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := t0.Add(time.Hour) // the events are at t0
	var wg sync.WaitGroup
	stats := make([]lifecycle.SweepStats, 4)
	for i := range stats {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e := lifecycle.NewEngine(store.New(pool), log)
			e.BatchSize, e.SweepBatchSize = 50, 50
			var err error
			stats[i], err = e.Sweep(context.Background(), now)
			if err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	moved := 0
	for _, st := range stats {
		moved += st.Moved
	}
	if moved != 300 {
		t.Fatalf("%d contacts moved across 4 sweeps, want each of 300 once", moved)
	}
	if n := count(t, pool, "SELECT count(*) FROM transitions"); n != 1200 {
		t.Fatalf("%d transitions, want 4 hops × 300", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM contacts WHERE stage = 'advocacy'"); n != 300 {
		t.Fatalf("%d in advocacy, want 300", n)
	}
	// Each contact's hops form one unbroken chain.
	if n := count(t, pool, `SELECT count(*) FROM (
		SELECT from_stage, lag(to_stage) OVER (PARTITION BY contact_id ORDER BY seq) AS prev FROM transitions) x
		WHERE prev IS NOT NULL AND prev <> from_stage`); n != 0 {
		t.Fatalf("%d hops do not continue from the previous one", n)
	}
	// The values the rule saw are recorded: the string revenue counts.
	if n := count(t, pool, `SELECT count(*) FROM transitions WHERE rule = 'buyer' AND (observed->>'sum("order_completed", "revenue", "all")')::float = 15.5`); n != 300 {
		t.Fatalf("%d buyer moves saw revenue 15.5, want 300", n)
	}
}

// Backtesting at a past instant ignores later events, and windows count
// back from that instant.
func TestSweepAsOf(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	applyJourney(t, s, `rules:
  - {name: recent-visitor, from: [awareness], to: consideration, when: 'count("page_viewed", "7d") >= 2'}
`)
	at := func(d int) time.Time { return time.Date(2026, 3, d, 12, 0, 0, 0, time.UTC) }
	m := func(user, id string, ts time.Time) ingest.Message {
		x := track(user, "", id, "page_viewed", "")
		x.Timestamp = ts
		return x
	}
	mustIngest(t, s,
		m("a", "1", at(1)), m("a", "2", at(3)), // two visits early in March
		m("b", "3", at(1)), m("b", "4", at(20)), // spread out
	)
	e := lifecycle.NewEngine(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// On the 5th, a has 2 visits in the last 7 days; b has 1 (its second
	// visit has not happened yet).
	st, err := e.Sweep(context.Background(), at(5))
	if err != nil {
		t.Fatal(err)
	}
	if st.Contacts != 2 || st.Moved != 1 {
		t.Fatalf("as of the 5th: %+v, want 2 contacts evaluated and 1 moved", st)
	}
	if c := contactOf(t, tx, "u:a"); c.ID == 0 {
		t.Fatal("no contact a")
	}
	var stage string
	_ = tx.QueryRow(context.Background(), `SELECT c.stage FROM contacts c JOIN identities i ON i.contact_id = c.id WHERE i.identity = 'u:a'`).Scan(&stage)
	if stage != "consideration" {
		t.Fatalf("a is in %s", stage)
	}
	_ = tx.QueryRow(context.Background(), `SELECT at FROM transitions`).Scan(new(time.Time))
}

// Event-driven evaluation loads only contacts whose new events something
// reads: a contact with a page view (a rule reads it) moves at once; one
// with only an event no rule reads is skipped and left where it was — which
// is where a full evaluation at that instant also leaves it — and the next
// sweep moves it when time makes a rule true; so is a contact in a stage
// whose rules do not read its new events; an identify always matters.
func TestEvaluateSkipsContactsWhoseEventsNothingReads(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	applyJourney(t, s, `rules:
  - {name: visitor, from: [awareness], to: consideration, when: 'count("page_viewed", "all") >= 1'}
  - {name: pro, from: [awareness], to: decision, when: 'traits.plan == "pro"'}
  - {name: patient, from: [awareness], to: retention, when: 'days_in_stage >= 30'}
`)
	res := mustIngest(t, s,
		track("a", "", "a-1", "page_viewed", ""),
		track("b", "", "b-1", "newsletter_signup", ""),
		identify("c", "", "c-1", `{"plan": "pro"}`, ""))
	ids := map[string]int64{"a": contactOf(t, tx, "u:a").ID, "b": contactOf(t, tx, "u:b").ID, "c": contactOf(t, tx, "u:c").ID}
	stage := func(who string) string {
		var st string
		if err := tx.QueryRow(context.Background(), `SELECT stage FROM contacts WHERE id = $1`, ids[who]).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if got := res.Names[ids["b"]]; len(got) != 1 || got[0] != "newsletter_signup" {
		t.Fatalf("b's new events: %v", got)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := lifecycle.NewEngine(s, log)
	now := t0.Add(time.Hour) // the events are at t0
	st, err := e.Evaluate(context.Background(), touchedBy(res.Contacts, nil, res.Names), now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Contacts != 2 || st.Skipped != 1 || st.Moved != 2 {
		t.Fatalf("evaluate: %+v, want a and c evaluated and moved, b skipped", st)
	}
	for who, want := range map[string]string{"a": "consideration", "b": "awareness", "c": "decision"} {
		if got := stage(who); got != want {
			t.Fatalf("after the events, %s is in %s, want %s", who, got, want)
		}
	}
	if n := count(t, tx, `SELECT count(*) FROM transitions WHERE contact_id = $1`, ids["b"]); n != 0 {
		t.Fatalf("b has %d transitions after being skipped", n)
	}
	// a is in consideration now, where no rule reads page views: another
	// one leaves it alone (its events are not read).
	res2 := mustIngest(t, s, track("a", "", "a-2", "page_viewed", ""))
	st, err = e.Evaluate(context.Background(), touchedBy(res2.Contacts, nil, res2.Names), now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Contacts != 0 || st.Skipped != 1 {
		t.Fatalf("evaluate a in consideration: %+v, want a skipped", st)
	}
	// Skipping changed no outcome: a dry run over everyone at the same
	// instant would not move a or b either.
	rules, err := lifecycle.LoadRules(mustRules(t, s))
	if err != nil {
		t.Fatal(err)
	}
	effects, _, err := e.DryRun(context.Background(), rules, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(effects) != 0 {
		t.Fatalf("a dry run at the same instant would still move: %+v", effects)
	}
	// Thirty days on, the sweep moves b (time made its rule true).
	if _, err := e.Sweep(context.Background(), now.Add(31*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := stage("b"); got != "retention" {
		t.Fatalf("after the sweep 31 days on, b is in %s, want retention", got)
	}
	var trig string
	if err := tx.QueryRow(context.Background(), `SELECT trigger FROM transitions WHERE contact_id = $1`, ids["b"]).Scan(&trig); err != nil || trig != "sweep" {
		t.Fatalf("b's move: trigger %q (%v), want sweep", trig, err)
	}
	// The same event for a contact is not skipped once a rule reads it,
	// and the engine sees the new rule without being told.
	applyJourney(t, s, `rules:
  - {name: subscriber, from: [awareness], to: consideration, when: 'ever("newsletter_signup")'}
`)
	res = mustIngest(t, s, track("d", "", "d-1", "newsletter_signup", ""))
	st, err = e.Evaluate(context.Background(), touchedBy(res.Contacts, nil, res.Names), now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 0 || st.Moved != 1 {
		t.Fatalf("evaluate after the rule changed: %+v, want d moved", st)
	}
	// A contact touched without names (a merge) is always evaluated.
	st, err = e.Evaluate(context.Background(), touchedBy([]int64{ids["b"]}, nil, map[int64][]string{ids["b"]: nil}), now)
	if err != nil || st.Contacts != 1 || st.Skipped != 0 {
		t.Fatalf("evaluate without names: %+v, %v; want b evaluated", st, err)
	}
}

// touchedBy lists contacts touched by ingested events, as the reactor
// hands them to the engine.
func touchedBy(ids []int64, events map[int64]*rule.Event, names map[int64][]string) []lifecycle.Touched {
	out := make([]lifecycle.Touched, len(ids))
	for i, id := range ids {
		out[i] = lifecycle.Touched{ID: id, Event: events[id], Names: names[id]}
	}
	return out
}

func mustRules(t *testing.T, s *store.Store) []lifecycle.StoredRule {
	t.Helper()
	r, err := s.Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The event a reactor hands over as JSON is decoded for a rule that reads
// its properties.
func TestEvaluateReadsTheEventsProperties(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	applyJourney(t, s, `rules:
  - {name: gold, from: [awareness], to: advocacy, when: 'event?.name == "upgraded" && event.properties.plan == "gold"'}
`)
	res := mustIngest(t, s, track("g", "", "g-1", "upgraded", `{"plan": "gold"}`), track("h", "", "h-1", "upgraded", `{"plan": "tin"}`))
	events := map[int64]*rule.Event{}
	for id, m := range res.Latest {
		events[id] = rule.EventJSON(m.Name, m.Timestamp, m.Properties)
	}
	e := lifecycle.NewEngine(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	st, err := e.Evaluate(context.Background(), touchedBy(res.Contacts, events, res.Names), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Contacts != 2 || st.Moved != 1 {
		t.Fatalf("evaluate: %+v, want both evaluated and g moved", st)
	}
	if n := count(t, tx, `SELECT count(*) FROM contacts WHERE id = $1 AND stage = 'advocacy'`, contactOf(t, tx, "u:g").ID); n != 1 {
		t.Fatal("g did not move on its gold upgrade")
	}
}

// Event-driven evaluation settles a contact through several stages in one
// pass, each hop decided on the events the rules of the stage it leaves
// read, though only the first rung's event just arrived.
func TestEvaluateSettlesMoversOnWhatEveryStageReads(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	applyJourney(t, s, ladder)
	// m has history for every rung but the first, stored without
	// evaluation; n has a cart but no orders; both are in awareness.
	mustIngest(t, s,
		track("m", "", "m-1", "cart_updated", ""),
		track("m", "", "m-2", "order_completed", `{"revenue": 30, "sku": "a"}`),
		track("m", "", "m-3", "order_completed", `{"revenue": 12.5, "sku": "b"}`),
		track("n", "", "n-1", "cart_updated", ""))
	res := mustIngest(t, s, track("m", "", "m-4", "page_viewed", ""), track("n", "", "n-2", "page_viewed", ""))
	e := lifecycle.NewEngine(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	st, err := e.Evaluate(context.Background(), touchedBy(res.Contacts, nil, res.Names), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Contacts != 2 || st.Moved != 2 || st.Hops != 6 {
		t.Fatalf("evaluate: %+v, want m and n moved, 4 hops and 2", st)
	}
	for who, want := range map[string]string{
		"m": "awareness>consideration visitor {\"count(\\\"page_viewed\\\", \\\"all\\\")\": 1}|" +
			"consideration>decision shopper {\"ever(\\\"cart_updated\\\")\": true}|" +
			"decision>retention buyer {\"sum(\\\"order_completed\\\", \\\"revenue\\\", \\\"all\\\")\": 42.5}|" +
			"retention>advocacy fan {\"distinct(\\\"order_completed\\\", \\\"sku\\\", \\\"all\\\")\": 2}",
		"n": "awareness>consideration visitor {\"count(\\\"page_viewed\\\", \\\"all\\\")\": 1}|" +
			"consideration>decision shopper {\"ever(\\\"cart_updated\\\")\": true}",
	} {
		var got string
		if err := tx.QueryRow(context.Background(), `SELECT string_agg(from_stage || '>' || to_stage || ' ' || rule || ' ' || observed::text, '|' ORDER BY seq)
			FROM transitions WHERE contact_id = $1`, contactOf(t, tx, "u:"+who).ID).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s's hops:\n got %s\nwant %s", who, got, want)
		}
	}
}

// passHook is an engine hook that announces each batch's contacts and
// waits to be released: the reactor's pass is held inside it.
type passHook struct {
	entered chan []int64
	release chan struct{}
}

func (h passHook) Needs(context.Context) ([]rule.Aggregate, error) { return nil, nil }

func (h passHook) AfterBatch(_ context.Context, batch []lifecycle.ContactFacts, _ time.Time, _ string) error {
	ids := make([]int64, len(batch))
	for i := range batch {
		ids[i] = batch[i].ID
	}
	h.entered <- ids
	<-h.release
	return nil
}

// The reactor is idle only once every contact touched has been evaluated,
// its moves stored and the engine's hook run: a benchmark waits on it to
// count evaluation that runs behind ingestion.
func TestReactorIdleOnlyWhenEvaluated(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	applyJourney(t, s, `rules:
  - {name: subscriber, from: [awareness], to: consideration, when: 'ever("newsletter_signup")'}
`)
	res := mustIngest(t, s, track("r", "", "r-1", "newsletter_signup", ""))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	entered, release := make(chan []int64, 1), make(chan struct{})
	r := lifecycle.NewReactor(lifecycle.NewEngine(s, quiet, lifecycle.WithHook(passHook{entered, release})), quiet, time.Now)
	if !r.Idle() {
		t.Fatal("a reactor nothing touched is not idle")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.Touch(res.Contacts, nil, res.Names)
	if r.Idle() {
		t.Fatal("idle with a contact just touched")
	}
	go r.Run(ctx)
	var ids []int64
	select {
	case ids = <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no pass ran")
	}
	if r.Idle() {
		t.Fatal("idle while the hook runs")
	}
	// The move is stored before the hook runs.
	if n := count(t, tx, `SELECT count(*) FROM contacts WHERE id = $1 AND stage = 'consideration'`, ids[0]); n != 1 {
		t.Fatal("r did not move on its signup")
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for !r.Idle() {
		if time.Now().After(deadline) {
			t.Fatal("not idle after the pass ended")
		}
		time.Sleep(time.Millisecond)
	}
}

// The journey's version changes with its tone rules too: the sender
// compiles holds and tone rules once per version.
func TestJourneyVersionCoversToneRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := store.New(pgtest.Pool(t))
	version := func() string {
		t.Helper()
		v, err := s.JourneyVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	applyJourney(t, s, ladder+"tones:\n  - {tone: formal, when: 'traits.company != nil'}\n  - {tone: friendly}\n")
	v1 := version()
	if again := version(); again != v1 {
		t.Fatalf("the same journey: version %q, then %q", v1, again)
	}
	applyJourney(t, s, ladder+"tones:\n  - {tone: formal, when: 'traits.company != nil'}\n  - {tone: warm}\n")
	if v2 := version(); v2 == v1 {
		t.Fatalf("another default tone: the version stays %q", v1)
	}
}
