package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgtest"
)

// The journey of the lifecycle tests: DESIGN.md's rules, made consistent
// so that settling is stable (a customer is one with a recent order).
const testJourney = `rules:
  - name: engaged-visitor
    from: [awareness]
    to: consideration
    when: count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1
  - name: shopping
    from: [consideration]
    to: decision
    when: count("product_viewed", "7d") >= 2 && ever("cart_updated")
  - name: customer
    from: [awareness, consideration, decision]
    to: retention
    when: count("order_completed", "90d") >= 1
  - name: advocate
    from: [retention]
    to: advocacy
    when: count("order_completed", "365d") >= 3 || ever("review_posted")
  - name: lapsed
    from: [retention, advocacy]
    to: decision
    when: days_since("order_completed") > 90
`

type purchaseEvent struct {
	user    string
	name    string
	at      time.Time
	revenue float64
}

// purchaseHistory generates an order log shaped like a real shop's:
// most visitors browse and leave, some buy once, a few are loyal, some
// lapsed; timestamps spread over 400 days before asOf.
func purchaseHistory(n int, asOf time.Time) []purchaseEvent {
	r := rand.New(rand.NewPCG(7, 42))
	var out []purchaseEvent
	at := func(maxDays float64) time.Time {
		return asOf.Add(-time.Duration(r.Float64() * maxDays * float64(24*time.Hour))).Truncate(time.Second)
	}
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("cust-%04d", i)
		add := func(name string, maxDays float64, k int) {
			for j := 0; j < k; j++ {
				ev := purchaseEvent{user: u, name: name, at: at(maxDays)}
				if name == "order_completed" {
					ev.revenue = float64(r.IntN(20000)) / 100
				}
				out = append(out, ev)
			}
		}
		switch persona := r.IntN(10); {
		case persona < 4: // browsers
			add("page_viewed", 30, r.IntN(6))
			add("email_clicked", 30, r.IntN(2))
		case persona < 6: // shoppers
			add("page_viewed", 20, 2+r.IntN(5))
			add("product_viewed", 10, r.IntN(5))
			add("cart_updated", 60, r.IntN(2))
		case persona < 8: // one-time or lapsed buyers
			add("page_viewed", 200, r.IntN(4))
			add("order_completed", 200, 1+r.IntN(2))
		default: // loyal
			add("order_completed", 365, 2+r.IntN(5))
			add("review_posted", 300, r.IntN(2))
			add("page_viewed", 14, r.IntN(4))
		}
	}
	return out
}

// handStage computes a contact's settled stage from its events with the
// rules of testJourney, written out by hand (no rule engine, no SQL).
func handStage(evs []purchaseEvent, asOf time.Time) string {
	count := func(name string, days float64) int {
		n := 0
		for _, e := range evs {
			if e.name == name && !e.at.After(asOf) && (days == 0 || e.at.After(asOf.Add(-time.Duration(days*24)*time.Hour))) {
				n++
			}
		}
		return n
	}
	ever := func(name string) bool { return count(name, 0) > 0 }
	daysSince := func(name string) float64 {
		var last time.Time
		for _, e := range evs {
			if e.name == name && !e.at.After(asOf) && e.at.After(last) {
				last = e.at
			}
		}
		if last.IsZero() {
			return 1e18
		}
		return asOf.Sub(last).Hours() / 24
	}
	stage := "awareness"
	visited := map[string]bool{stage: true}
	for {
		next := ""
		switch {
		case stage == "awareness" && (count("page_viewed", 14) >= 3 || count("email_clicked", 14) >= 1):
			next = "consideration"
		case stage == "consideration" && count("product_viewed", 7) >= 2 && ever("cart_updated"):
			next = "decision"
		case (stage == "awareness" || stage == "consideration" || stage == "decision") && count("order_completed", 90) >= 1:
			next = "retention"
		case stage == "retention" && (count("order_completed", 365) >= 3 || ever("review_posted")):
			next = "advocacy"
		case (stage == "retention" || stage == "advocacy") && daysSince("order_completed") > 90:
			next = "decision"
		}
		if next == "" || visited[next] {
			return stage
		}
		visited[next] = true
		stage = next
	}
}

func TestJourneyOnImportedPurchasesMatchesHandComputation(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	asOf := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	history := purchaseHistory(400, asOf)
	// A few events after the as-of instant, which a backtest must ignore.
	history = append(history, purchaseEvent{user: history[0].user, name: "order_completed", at: asOf.Add(time.Hour), revenue: 10})

	var csv strings.Builder
	csv.WriteString("userId,event,timestamp,revenue\n")
	byUser := map[string][]purchaseEvent{}
	for _, e := range history {
		rev := ""
		if e.revenue > 0 {
			rev = fmt.Sprintf("%.2f", e.revenue)
		}
		fmt.Fprintf(&csv, "%s,%s,%s,%s\n", e.user, e.name, e.at.Format(time.RFC3339), rev)
		byUser[e.user] = append(byUser[e.user], e)
	}
	dir := t.TempDir()
	events := filepath.Join(dir, "events.csv")
	journeyFile := filepath.Join(dir, "journey.yaml")
	_ = os.WriteFile(events, []byte(csv.String()), 0o644)
	_ = os.WriteFile(journeyFile, []byte(testJourney), 0o644)

	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, err := runWaymark(t, url, args...)
		if err != nil {
			t.Fatalf("waymark %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	mustRun("import", events)
	if out := mustRun("apply", "-f", journeyFile); !strings.Contains(out, `rule: customer added (version 1)`) {
		t.Fatalf("apply said %q", out)
	}
	// The dry run changes nothing and predicts the moves.
	dry := mustRun("apply", "-f", journeyFile, "--dry-run", "--as-of", asOf.Format(time.RFC3339))
	if !strings.Contains(dry, "nothing was changed") || !strings.Contains(dry, "engaged-visitor") {
		t.Fatalf("dry run said %q", dry)
	}
	want := map[string]string{}
	wantCounts := map[string]int64{"awareness": 0, "consideration": 0, "decision": 0, "retention": 0, "advocacy": 0}
	for u, evs := range byUser {
		want[u] = handStage(evs, asOf)
		wantCounts[want[u]]++
	}
	var before map[string]int64
	_ = json.Unmarshal([]byte(mustRun("stages", "--json")), &before)
	if before["awareness"] != int64(len(byUser)) {
		t.Fatalf("before the tick: %v, want everyone in awareness", before)
	}

	out := mustRun("tick", "--as-of", asOf.Format(time.RFC3339))
	if !strings.Contains(out, fmt.Sprintf("evaluated %d contacts", len(byUser))) {
		t.Fatalf("tick said %q", out)
	}
	var got map[string]int64
	_ = json.Unmarshal([]byte(mustRun("stages", "--json")), &got)
	for st, n := range wantCounts {
		if got[st] != n {
			t.Errorf("stage %s: %d contacts, hand computation says %d", st, got[st], n)
		}
	}
	if wantCounts["advocacy"] == 0 || wantCounts["decision"] == 0 || wantCounts["consideration"] == 0 {
		t.Fatalf("the generated history does not exercise every stage: %v", wantCounts)
	}

	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, _ := pool.Query(context.Background(), `SELECT c.user_id, c.stage FROM contacts c`)
	mismatches := 0
	for rows.Next() {
		var u, st string
		_ = rows.Scan(&u, &st)
		if want[u] != st {
			mismatches++
			if mismatches < 5 {
				t.Errorf("%s: stage %s, hand computation says %s", u, st, want[u])
			}
		}
	}
	rows.Close()

	// The dry run predicted exactly the moves the tick made. Each line is
	// "rule  N  from → to  examples".
	var hops int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM transitions`).Scan(&hops)
	predicted := 0
	for _, line := range strings.Split(dry, "\n") {
		var rule string
		var n int
		if !strings.Contains(line, "→") {
			continue
		}
		if _, err := fmt.Sscanf(line, "%s %d", &rule, &n); err == nil {
			predicted += n
		}
	}
	if predicted != hops {
		t.Errorf("dry run predicted %d moves, the tick made %d", predicted, hops)
	}

	// A second tick at the same instant moves nobody.
	if out := mustRun("tick", "--as-of", asOf.Format(time.RFC3339)); !strings.Contains(out, " 0 moved") {
		t.Errorf("second tick: %q", out)
	}

	// The history of a loyal customer shows each hop with what the rule saw.
	var loyal string
	for u, st := range want {
		if st == "advocacy" && (loyal == "" || u < loyal) {
			loyal = u
		}
	}
	hist := mustRun("history", loyal)
	lines := strings.Split(strings.TrimSpace(hist), "\n")
	if len(lines) < 2 || !strings.Contains(hist, "retention → advocacy  by advocate v1") || !strings.Contains(hist, `count("order_completed", "90d") = `) {
		t.Errorf("history of %s:\n%s", loyal, hist)
	}
}

func TestApplyRefusesBadJourneyAndKeepsTheStoredOne(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	_ = os.WriteFile(good, []byte(testJourney), 0o644)
	if _, errOut, err := runWaymark(t, url, "apply", "-f", good); err != nil {
		t.Fatalf("%v %s", err, errOut)
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte(strings.Replace(strings.Replace(testJourney, `count("order_completed", "90d") >= 1`, `count("order_completed", 90) >= 1`, 1), "to: advocacy", "to: advocasy", 1)), 0o644)
	_, _, err := runWaymark(t, url, "apply", "-f", bad)
	if err == nil {
		t.Fatal("a bad journey was applied")
	}
	msg := err.Error()
	if n := strings.Count(msg, "\n") + 1; n != 2 {
		t.Errorf("%d errors, want 2:\n%s", n, msg)
	}
	for _, want := range []string{bad + ":13:36: rule \"customer\": when: the window of count must be a literal string", bad + ":16:9: to: unknown stage \"advocasy\""} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	// Re-applying the stored journey is a no-op; editing a rule bumps its
	// version.
	out, _, _ := runWaymark(t, url, "apply", "-f", good)
	if !strings.Contains(out, "nothing was changed") {
		t.Errorf("re-apply said %q", out)
	}
	edited := filepath.Join(dir, "edited.yaml")
	_ = os.WriteFile(edited, []byte(strings.Replace(testJourney, `>= 3 || ever("review_posted")`, `>= 4 || ever("review_posted")`, 1)), 0o644)
	out, _, err = runWaymark(t, url, "apply", "-f", edited)
	if err != nil || strings.TrimSpace(out) != "rule: advocate changed (version 2)" {
		t.Errorf("edit said %q, %v", out, err)
	}
}
