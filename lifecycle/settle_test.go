package lifecycle

import (
	"reflect"
	"testing"
	"time"

	"github.com/waymark/waymark/rule"
)

// now is the instant the tests evaluate at.
var now = time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)

// journey returns the transition rules of a typical journey, in order.
func journey(t testing.TB) []Rule {
	t.Helper()
	newRule := func(name string, from []rule.Stage, to rule.Stage, when string) Rule {
		p, err := rule.Compile(when, rule.CompileOptions{})
		if err != nil {
			t.Fatalf("rule %s: %v", name, err)
		}
		return Rule{Name: name, Version: 1, From: from, To: to, When: p}
	}
	return []Rule{
		newRule("engaged-visitor", []rule.Stage{rule.Awareness}, rule.Consideration,
			`count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`),
		newRule("shopper", []rule.Stage{rule.Consideration}, rule.Decision,
			`count("product_viewed", "7d") >= 2 && ever("cart_updated")`),
		newRule("customer", []rule.Stage{rule.Decision}, rule.Retention,
			`count("order_completed", "all") >= 1`),
		newRule("advocate", []rule.Stage{rule.Retention}, rule.Advocacy,
			`count("order_completed", "365d") >= 3 || ever("review_posted")`),
		newRule("lapsed", []rule.Stage{rule.Retention, rule.Advocacy}, rule.Decision,
			`days_since("order_completed") > 90 && stage in ["retention", "advocacy"]`),
	}
}

func TestSettle(t *testing.T) {
	t.Parallel()
	const d = 24 * time.Hour
	pageViews := rule.Aggregate{Kind: rule.AggCount, Event: "page_viewed", Window: rule.Window{Dur: 14 * d}}
	clicks := rule.Aggregate{Kind: rule.AggCount, Event: "email_clicked", Window: rule.Window{Dur: 14 * d}}
	productViews := rule.Aggregate{Kind: rule.AggCount, Event: "product_viewed", Window: rule.Window{Dur: 7 * d}}
	cart := rule.Aggregate{Kind: rule.AggEver, Event: "cart_updated"}
	orders := rule.Aggregate{Kind: rule.AggCount, Event: "order_completed", Window: rule.Window{All: true}}
	ordersYear := rule.Aggregate{Kind: rule.AggCount, Event: "order_completed", Window: rule.Window{Dur: 365 * d}}
	review := rule.Aggregate{Kind: rule.AggEver, Event: "review_posted"}
	sinceOrder := rule.Aggregate{Kind: rule.AggDaysSince, Event: "order_completed"}

	tests := []struct {
		name   string
		stage  rule.Stage
		values map[rule.Aggregate]float64
		want   []Move
	}{
		{
			name:   "a visitor who bought goes from awareness to retention in one pass",
			stage:  rule.Awareness,
			values: map[rule.Aggregate]float64{pageViews: 5, productViews: 3, cart: 1, orders: 1, ordersYear: 1, sinceOrder: 2},
			want: []Move{
				{From: rule.Awareness, To: rule.Consideration, Rule: "engaged-visitor", Version: 1, Observed: []rule.Observation{
					{Expr: `count("page_viewed", "14d")`, Value: 5.0}, {Expr: `count("email_clicked", "14d")`, Value: 0.0}}},
				{From: rule.Consideration, To: rule.Decision, Rule: "shopper", Version: 1, Observed: []rule.Observation{
					{Expr: `count("product_viewed", "7d")`, Value: 3.0}, {Expr: `ever("cart_updated")`, Value: true}}},
				{From: rule.Decision, To: rule.Retention, Rule: "customer", Version: 1, Observed: []rule.Observation{
					{Expr: `count("order_completed", "all")`, Value: 1.0}}},
			},
		},
		{
			name:   "a reviewer goes on to advocacy",
			stage:  rule.Decision,
			values: map[rule.Aggregate]float64{orders: 1, review: 1, sinceOrder: 10},
			want: []Move{
				{From: rule.Decision, To: rule.Retention, Rule: "customer", Version: 1, Observed: []rule.Observation{
					{Expr: `count("order_completed", "all")`, Value: 1.0}}},
				{From: rule.Retention, To: rule.Advocacy, Rule: "advocate", Version: 1, Observed: []rule.Observation{
					{Expr: `count("order_completed", "365d")`, Value: 0.0}, {Expr: `ever("review_posted")`, Value: true}}},
			},
		},
		{
			name:   "one hop when only the first rule holds",
			stage:  rule.Awareness,
			values: map[rule.Aggregate]float64{clicks: 1, productViews: 1},
			want: []Move{
				{From: rule.Awareness, To: rule.Consideration, Rule: "engaged-visitor", Version: 1, Observed: []rule.Observation{
					{Expr: `count("page_viewed", "14d")`, Value: 0.0}, {Expr: `count("email_clicked", "14d")`, Value: 1.0}}},
			},
		},
		{
			// lapsed moves retention back to decision; customer would take
			// it to retention again, which was visited, so it stops.
			name:   "a lapsed customer moves back to decision and stops there",
			stage:  rule.Retention,
			values: map[rule.Aggregate]float64{orders: 2, ordersYear: 1, sinceOrder: 120},
			want: []Move{
				{From: rule.Retention, To: rule.Decision, Rule: "lapsed", Version: 1, Observed: []rule.Observation{
					{Expr: `days_since("order_completed")`, Value: 120.0}, {Expr: "stage", Value: "retention"}}},
			},
		},
		{
			// From decision, customer still holds (orders ever) and retention
			// was not visited yet; from retention, lapsed leads back to the
			// visited decision, so it stops in retention.
			name:   "a lapsed advocate moves back through decision to retention",
			stage:  rule.Advocacy,
			values: map[rule.Aggregate]float64{orders: 9, ordersYear: 0, sinceOrder: 91},
			want: []Move{
				{From: rule.Advocacy, To: rule.Decision, Rule: "lapsed", Version: 1, Observed: []rule.Observation{
					{Expr: `days_since("order_completed")`, Value: 91.0}, {Expr: "stage", Value: "advocacy"}}},
				{From: rule.Decision, To: rule.Retention, Rule: "customer", Version: 1, Observed: []rule.Observation{
					{Expr: `count("order_completed", "all")`, Value: 9.0}}},
			},
		},
		{
			name:   "a recent customer stays in retention",
			stage:  rule.Retention,
			values: map[rule.Aggregate]float64{orders: 2, ordersYear: 2, sinceOrder: 30},
		},
		{
			name:  "a new contact without activity stays in awareness",
			stage: rule.Awareness,
		},
	}
	rules := journey(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &rule.Facts{Now: now, Stage: tt.stage, StageEnteredAt: now.Add(-40 * d), Values: tt.values}
			before := *f
			got, err := Settle(rules, f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Settle\n got: %+v\nwant: %+v", got, tt.want)
			}
			if !reflect.DeepEqual(*f, before) {
				t.Fatalf("Settle changed the facts: %+v, was %+v", *f, before)
			}
		})
	}
}

func TestSettleRules(t *testing.T) {
	t.Parallel()
	compile := func(src string) *rule.Program {
		p, err := rule.Compile(src, rule.CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	always := compile(`true`)
	tests := []struct {
		name    string
		rules   []Rule
		stage   rule.Stage
		want    []Move
		wantErr string
	}{
		{
			name: "a cycle stops at the first visited stage",
			rules: []Rule{
				{Name: "a-to-c", Version: 1, From: []rule.Stage{rule.Awareness}, To: rule.Consideration, When: always},
				{Name: "c-to-a", Version: 2, From: []rule.Stage{rule.Consideration}, To: rule.Awareness, When: always},
			},
			stage: rule.Awareness,
			want:  []Move{{From: rule.Awareness, To: rule.Consideration, Rule: "a-to-c", Version: 1, Observed: []rule.Observation{}}},
		},
		{
			name: "a rule to the current stage does nothing",
			rules: []Rule{
				{Name: "stay", Version: 1, From: []rule.Stage{rule.Decision}, To: rule.Decision, When: always},
				{Name: "later", Version: 1, From: []rule.Stage{rule.Decision}, To: rule.Retention, When: always},
			},
			stage: rule.Decision,
		},
		{
			name: "the first matching rule in order wins",
			rules: []Rule{
				{Name: "not-from-here", Version: 1, From: []rule.Stage{rule.Awareness}, To: rule.Advocacy, When: always},
				{Name: "false", Version: 1, From: []rule.Stage{rule.Retention}, To: rule.Advocacy, When: compile(`stage == "awareness"`)},
				{Name: "first", Version: 3, From: []rule.Stage{rule.Decision, rule.Retention}, To: rule.Decision, When: compile(`days_in_stage >= 30`)},
				{Name: "second", Version: 1, From: []rule.Stage{rule.Retention}, To: rule.Consideration, When: always},
			},
			stage: rule.Retention,
			want: []Move{
				// In decision, days_in_stage is 0: "first" does not match again,
				// and no other rule starts from decision.
				{From: rule.Retention, To: rule.Decision, Rule: "first", Version: 3, Observed: []rule.Observation{{Expr: "days_in_stage", Value: 40.0}}},
			},
		},
		{
			name: "days_in_stage restarts at zero after a hop",
			rules: []Rule{
				{Name: "in", Version: 1, From: []rule.Stage{rule.Awareness}, To: rule.Consideration, When: always},
				{Name: "waited", Version: 1, From: []rule.Stage{rule.Consideration}, To: rule.Decision, When: compile(`days_in_stage >= 7`)},
				{Name: "fresh", Version: 1, From: []rule.Stage{rule.Consideration}, To: rule.Retention, When: compile(`days_in_stage == 0`)},
			},
			stage: rule.Awareness,
			want: []Move{
				{From: rule.Awareness, To: rule.Consideration, Rule: "in", Version: 1, Observed: []rule.Observation{}},
				{From: rule.Consideration, To: rule.Retention, Rule: "fresh", Version: 1, Observed: []rule.Observation{{Expr: "days_in_stage", Value: 0.0}}},
			},
		},
		{
			name: "an error names the rule and keeps the hops before it",
			rules: []Rule{
				{Name: "in", Version: 1, From: []rule.Stage{rule.Awareness}, To: rule.Consideration, When: always},
				{Name: "broken", Version: 4, From: []rule.Stage{rule.Consideration}, To: rule.Decision, When: compile(`traits.plan > 3`)},
			},
			stage:   rule.Awareness,
			want:    []Move{{From: rule.Awareness, To: rule.Consideration, Rule: "in", Version: 1, Observed: []rule.Observation{}}},
			wantErr: `rule "broken" (version 4): evaluating rule: line 1, column 13: invalid operation: string > int`,
		},
		{
			name:    "a rule without a condition is an error",
			rules:   []Rule{{Name: "empty", Version: 1, From: []rule.Stage{rule.Awareness}, To: rule.Consideration}},
			stage:   rule.Awareness,
			wantErr: `rule "empty" (version 1): no condition`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &rule.Facts{Now: now, Stage: tt.stage, StageEnteredAt: now.Add(-40 * 24 * time.Hour),
				Traits: map[string]any{"plan": "pro"}}
			got, err := Settle(tt.rules, f)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Settle error = %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Settle\n got: %+v\nwant: %+v", got, tt.want)
			}
		})
	}
}

func BenchmarkSettle(b *testing.B) {
	const d = 24 * time.Hour
	rules := journey(b)
	f := &rule.Facts{Now: now, Stage: rule.Awareness, StageEnteredAt: now.Add(-d), Values: map[rule.Aggregate]float64{
		{Kind: rule.AggCount, Event: "page_viewed", Window: rule.Window{Dur: 14 * d}}:   5,
		{Kind: rule.AggCount, Event: "product_viewed", Window: rule.Window{Dur: 7 * d}}: 3,
		{Kind: rule.AggEver, Event: "cart_updated"}:                                     1,
		{Kind: rule.AggCount, Event: "order_completed", Window: rule.Window{All: true}}: 1,
	}}
	b.ReportAllocs()
	for b.Loop() {
		moves, err := Settle(rules, f)
		if err != nil || len(moves) != 3 {
			b.Fatalf("Settle = %d moves, %v", len(moves), err)
		}
	}
}
