package lifecycle

import (
	"math"
	"reflect"
	"testing"
	"time"
)

// journey returns the transition rules of a typical journey, in order.
func journey(t testing.TB) []Rule {
	t.Helper()
	rule := func(name string, from []Stage, to Stage, when string) Rule {
		p, err := Compile(when, CompileOptions{})
		if err != nil {
			t.Fatalf("rule %s: %v", name, err)
		}
		return Rule{Name: name, Version: 1, From: from, To: to, When: p}
	}
	return []Rule{
		rule("engaged-visitor", []Stage{Awareness}, Consideration,
			`count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`),
		rule("shopper", []Stage{Consideration}, Decision,
			`count("product_viewed", "7d") >= 2 && ever("cart_updated")`),
		rule("customer", []Stage{Decision}, Retention,
			`count("order_completed", "all") >= 1`),
		rule("advocate", []Stage{Retention}, Advocacy,
			`count("order_completed", "365d") >= 3 || ever("review_posted")`),
		rule("lapsed", []Stage{Retention, Advocacy}, Decision,
			`days_since("order_completed") > 90 && stage in ["retention", "advocacy"]`),
	}
}

func TestSettle(t *testing.T) {
	t.Parallel()
	const d = 24 * time.Hour
	pageViews := Aggregate{Kind: AggCount, Event: "page_viewed", Window: Window{Dur: 14 * d}}
	clicks := Aggregate{Kind: AggCount, Event: "email_clicked", Window: Window{Dur: 14 * d}}
	productViews := Aggregate{Kind: AggCount, Event: "product_viewed", Window: Window{Dur: 7 * d}}
	cart := Aggregate{Kind: AggEver, Event: "cart_updated"}
	orders := Aggregate{Kind: AggCount, Event: "order_completed", Window: Window{All: true}}
	ordersYear := Aggregate{Kind: AggCount, Event: "order_completed", Window: Window{Dur: 365 * d}}
	review := Aggregate{Kind: AggEver, Event: "review_posted"}
	sinceOrder := Aggregate{Kind: AggDaysSince, Event: "order_completed"}

	tests := []struct {
		name   string
		stage  Stage
		values map[Aggregate]float64
		want   []Move
	}{
		{
			name:   "a visitor who bought goes from awareness to retention in one pass",
			stage:  Awareness,
			values: map[Aggregate]float64{pageViews: 5, productViews: 3, cart: 1, orders: 1, ordersYear: 1, sinceOrder: 2},
			want: []Move{
				{From: Awareness, To: Consideration, Rule: "engaged-visitor", Version: 1, Observed: []Observation{
					{`count("page_viewed", "14d")`, 5.0}, {`count("email_clicked", "14d")`, 0.0}}},
				{From: Consideration, To: Decision, Rule: "shopper", Version: 1, Observed: []Observation{
					{`count("product_viewed", "7d")`, 3.0}, {`ever("cart_updated")`, true}}},
				{From: Decision, To: Retention, Rule: "customer", Version: 1, Observed: []Observation{
					{`count("order_completed", "all")`, 1.0}}},
			},
		},
		{
			name:   "a reviewer goes on to advocacy",
			stage:  Decision,
			values: map[Aggregate]float64{orders: 1, review: 1, sinceOrder: 10},
			want: []Move{
				{From: Decision, To: Retention, Rule: "customer", Version: 1, Observed: []Observation{
					{`count("order_completed", "all")`, 1.0}}},
				{From: Retention, To: Advocacy, Rule: "advocate", Version: 1, Observed: []Observation{
					{`count("order_completed", "365d")`, 0.0}, {`ever("review_posted")`, true}}},
			},
		},
		{
			name:   "one hop when only the first rule holds",
			stage:  Awareness,
			values: map[Aggregate]float64{clicks: 1, productViews: 1},
			want: []Move{
				{From: Awareness, To: Consideration, Rule: "engaged-visitor", Version: 1, Observed: []Observation{
					{`count("page_viewed", "14d")`, 0.0}, {`count("email_clicked", "14d")`, 1.0}}},
			},
		},
		{
			// lapsed moves retention back to decision; customer would take
			// it to retention again, which was visited, so it stops.
			name:   "a lapsed customer moves back to decision and stops there",
			stage:  Retention,
			values: map[Aggregate]float64{orders: 2, ordersYear: 1, sinceOrder: 120},
			want: []Move{
				{From: Retention, To: Decision, Rule: "lapsed", Version: 1, Observed: []Observation{
					{`days_since("order_completed")`, 120.0}, {"stage", "retention"}}},
			},
		},
		{
			// From decision, customer still holds (orders ever) and retention
			// was not visited yet; from retention, lapsed leads back to the
			// visited decision, so it stops in retention.
			name:   "a lapsed advocate moves back through decision to retention",
			stage:  Advocacy,
			values: map[Aggregate]float64{orders: 9, ordersYear: 0, sinceOrder: 91},
			want: []Move{
				{From: Advocacy, To: Decision, Rule: "lapsed", Version: 1, Observed: []Observation{
					{`days_since("order_completed")`, 91.0}, {"stage", "advocacy"}}},
				{From: Decision, To: Retention, Rule: "customer", Version: 1, Observed: []Observation{
					{`count("order_completed", "all")`, 9.0}}},
			},
		},
		{
			name:   "a recent customer stays in retention",
			stage:  Retention,
			values: map[Aggregate]float64{orders: 2, ordersYear: 2, sinceOrder: 30},
		},
		{
			name:  "a new contact without activity stays in awareness",
			stage: Awareness,
		},
	}
	rules := journey(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &Facts{Now: now, Stage: tt.stage, StageEnteredAt: now.Add(-40 * d), Values: tt.values}
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
	compile := func(src string) *Program {
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	always := compile(`true`)
	tests := []struct {
		name    string
		rules   []Rule
		stage   Stage
		want    []Move
		wantErr string
	}{
		{
			name: "a cycle stops at the first visited stage",
			rules: []Rule{
				{Name: "a-to-c", Version: 1, From: []Stage{Awareness}, To: Consideration, When: always},
				{Name: "c-to-a", Version: 2, From: []Stage{Consideration}, To: Awareness, When: always},
			},
			stage: Awareness,
			want:  []Move{{From: Awareness, To: Consideration, Rule: "a-to-c", Version: 1, Observed: []Observation{}}},
		},
		{
			name: "a rule to the current stage does nothing",
			rules: []Rule{
				{Name: "stay", Version: 1, From: []Stage{Decision}, To: Decision, When: always},
				{Name: "later", Version: 1, From: []Stage{Decision}, To: Retention, When: always},
			},
			stage: Decision,
		},
		{
			name: "the first matching rule in order wins",
			rules: []Rule{
				{Name: "not-from-here", Version: 1, From: []Stage{Awareness}, To: Advocacy, When: always},
				{Name: "false", Version: 1, From: []Stage{Retention}, To: Advocacy, When: compile(`stage == "awareness"`)},
				{Name: "first", Version: 3, From: []Stage{Decision, Retention}, To: Decision, When: compile(`days_in_stage >= 30`)},
				{Name: "second", Version: 1, From: []Stage{Retention}, To: Consideration, When: always},
			},
			stage: Retention,
			want: []Move{
				// In decision, days_in_stage is 0: "first" does not match again,
				// and no other rule starts from decision.
				{From: Retention, To: Decision, Rule: "first", Version: 3, Observed: []Observation{{"days_in_stage", 40.0}}},
			},
		},
		{
			name: "days_in_stage restarts at zero after a hop",
			rules: []Rule{
				{Name: "in", Version: 1, From: []Stage{Awareness}, To: Consideration, When: always},
				{Name: "waited", Version: 1, From: []Stage{Consideration}, To: Decision, When: compile(`days_in_stage >= 7`)},
				{Name: "fresh", Version: 1, From: []Stage{Consideration}, To: Retention, When: compile(`days_in_stage == 0`)},
			},
			stage: Awareness,
			want: []Move{
				{From: Awareness, To: Consideration, Rule: "in", Version: 1, Observed: []Observation{}},
				{From: Consideration, To: Retention, Rule: "fresh", Version: 1, Observed: []Observation{{"days_in_stage", 0.0}}},
			},
		},
		{
			name: "an error names the rule and keeps the hops before it",
			rules: []Rule{
				{Name: "in", Version: 1, From: []Stage{Awareness}, To: Consideration, When: always},
				{Name: "broken", Version: 4, From: []Stage{Consideration}, To: Decision, When: compile(`traits.plan > 3`)},
			},
			stage:   Awareness,
			want:    []Move{{From: Awareness, To: Consideration, Rule: "in", Version: 1, Observed: []Observation{}}},
			wantErr: `rule "broken" (version 4): evaluating rule: line 1, column 13: invalid operation: string > int`,
		},
		{
			name:    "a rule without a condition is an error",
			rules:   []Rule{{Name: "empty", Version: 1, From: []Stage{Awareness}, To: Consideration}},
			stage:   Awareness,
			wantErr: `rule "empty" (version 1): no condition`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &Facts{Now: now, Stage: tt.stage, StageEnteredAt: now.Add(-40 * 24 * time.Hour),
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

func TestDaysToAnniversary(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	at := func(y int, m time.Month, d, h int, loc *time.Location) time.Time {
		return time.Date(y, m, d, h, 0, 0, 0, loc)
	}
	inf := math.Inf(1)
	tests := []struct {
		name    string
		trait   any
		now     time.Time
		want    float64
		wantErr string
	}{
		{name: "on the day", trait: "1990-06-15", now: at(2025, 6, 15, 23, time.UTC), want: 0},
		{name: "tomorrow", trait: "1990-06-16", now: at(2025, 6, 15, 12, time.UTC), want: 1},
		{name: "yesterday", trait: "1990-06-14", now: at(2025, 6, 15, 12, time.UTC), want: 364},
		{name: "yesterday, before a leap day", trait: "1990-03-01", now: at(2027, 3, 2, 12, time.UTC), want: 365},
		{name: "next month", trait: "1990-07-15", now: at(2025, 6, 15, 12, time.UTC), want: 30},
		{name: "new year", trait: "2000-01-01", now: at(2025, 12, 31, 12, time.UTC), want: 1},
		{name: "RFC 3339", trait: "2021-06-20T09:30:00Z", now: at(2025, 6, 15, 12, time.UTC), want: 5},
		{name: "RFC 3339 keeps its own date", trait: "2021-06-20T23:30:00-05:00", now: at(2025, 6, 20, 12, time.UTC), want: 0},
		{name: "time.Time", trait: time.Date(1985, 6, 18, 0, 0, 0, 0, time.UTC), now: at(2025, 6, 15, 12, time.UTC), want: 3},
		{name: "today in the contact's zone", trait: "1990-06-16", now: at(2025, 6, 16, 0, paris), want: 0},
		{name: "across a DST change", trait: "1990-11-01", now: at(2025, 10, 1, 12, paris), want: 31},
		{name: "Feb 29 in a leap year", trait: "2000-02-29", now: at(2028, 2, 29, 12, time.UTC), want: 0},
		{name: "Feb 29 on Feb 28 in other years", trait: "2000-02-29", now: at(2025, 2, 28, 12, time.UTC), want: 0},
		{name: "Feb 29 from March", trait: "2000-02-29", now: at(2027, 3, 1, 12, time.UTC), want: 365},
		{name: "Feb 29 before a leap year", trait: "2000-02-29", now: at(2028, 2, 1, 12, time.UTC), want: 28},
		{name: "missing", trait: nil, now: now, want: inf},
		{name: "empty", trait: "", now: now, want: inf},
		{name: "zero time", trait: time.Time{}, now: now, want: inf},
		{name: "not a date", trait: "17/05/1990", now: now, wantErr: `"17/05/1990" is not a date like 1990-05-17 or an RFC 3339 time`},
		{name: "a number", trait: 19900517, now: now, wantErr: `19900517 (int) is not a date like 1990-05-17`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := daysToAnniversary(tt.trait, tt.now)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("daysToAnniversary(%v) = %v, %v, want error %q", tt.trait, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("daysToAnniversary(%v, %v) = %v, %v, want %v", tt.trait, tt.now, got, err, tt.want)
			}
		})
	}
}

func BenchmarkSettle(b *testing.B) {
	const d = 24 * time.Hour
	rules := journey(b)
	f := &Facts{Now: now, Stage: Awareness, StageEnteredAt: now.Add(-d), Values: map[Aggregate]float64{
		{Kind: AggCount, Event: "page_viewed", Window: Window{Dur: 14 * d}}:   5,
		{Kind: AggCount, Event: "product_viewed", Window: Window{Dur: 7 * d}}: 3,
		{Kind: AggEver, Event: "cart_updated"}:                                1,
		{Kind: AggCount, Event: "order_completed", Window: Window{All: true}}: 1,
	}}
	b.ReportAllocs()
	for b.Loop() {
		moves, err := Settle(rules, f)
		if err != nil || len(moves) != 3 {
			b.Fatalf("Settle = %d moves, %v", len(moves), err)
		}
	}
}

// The compact form a sweep loads (Nums along a shared needs list) gives
// the same verdicts and observations as the map, including an aggregate
// missing from the list (its default) and two programs sharing a list.
func TestNumsEqualValues(t *testing.T) {
	a, err := Compile(`count("order_completed", "365d") >= 3 || days_since("page_viewed") < 2`, CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(`ever("review_posted") && sum("order_completed", "revenue", "all") > 10`, CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	needs := Needs(a, b)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, nums := range [][]float64{
		{3, 5, 1, 11},
		{2, 1.5, 0, 11},
		{2, math.Inf(1), 1, 10},
		{0, 0.5, 1, 20},
	} {
		values := map[Aggregate]float64{}
		for i, n := range needs {
			values[n] = nums[i]
		}
		m := Facts{Now: now, Stage: "awareness", Values: values}
		d := Facts{Now: now, Stage: "awareness", Nums: nums, NumNeeds: needs}
		for _, p := range []*Program{a, b} {
			wantOK, wantObs, werr := p.EvalTrace(&m)
			gotOK, gotObs, gerr := p.EvalTrace(&d)
			if werr != nil || gerr != nil || wantOK != gotOK || !reflect.DeepEqual(wantObs, gotObs) {
				t.Fatalf("%s with %v: map gives %v %v %v, slice %v %v %v", p.Source, nums, wantOK, wantObs, werr, gotOK, gotObs, gerr)
			}
		}
		if !reflect.DeepEqual(d.ValuesMap(), values) {
			t.Fatalf("ValuesMap %v, want %v", d.ValuesMap(), values)
		}
	}
	// Missing from the list: days_since is +Inf, so the rule is false.
	short := Facts{Now: now, Nums: []float64{1}, NumNeeds: needs[:1]}
	if ok, err := a.Eval(&short); err != nil || ok {
		t.Fatalf("missing aggregates: %v %v, want false", ok, err)
	}
	if v := short.Value(needs[1]); !math.IsInf(v, 1) {
		t.Fatalf("missing days_since: %v, want +Inf", v)
	}
}
