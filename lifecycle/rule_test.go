package lifecycle

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// now is the instant the tests evaluate at.
var now = time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	const known = "count, sum, distinct, days_since, ever, days_to_anniversary; builtins: len, abs, ceil, floor, round, int, float, string, trim, trimPrefix, trimSuffix, upper, lower, hasPrefix, hasSuffix, indexOf, lastIndexOf, max, min, get"
	tests := []struct {
		src       string
		enrolment bool
		line, col int
		msg       string
	}{
		{src: `cnt("page_viewed", "14d") > 0`, line: 1, col: 1,
			msg: `unknown function "cnt" (known: ` + known + `)`},
		{src: "count(\"page_viewed\", \"14d\") >= 3\n  || count(\"email_clicked\", \"14x\") >= 1", line: 2, col: 29,
			msg: `unknown window "14x": use 30m, 12h, 14d, 8w, 1y or all`},
		{src: "ever(\"cart_updated\") &&\n\tcount(name, \"7d\") > 2", line: 2, col: 8,
			msg: `the name of count must be a literal string like "order_completed"`},
		{src: "ever(\"cart_updated\")\n&& count(\"product_viewed\", \"7\" + \"d\") > 2", line: 2, col: 28,
			msg: `the window of count must be a literal string like "14d"`},
		{src: "count(\"a\", \"14d\") > 0 &&\n\n   sum(\"order_completed\", revenue, \"all\") > 100", line: 3, col: 27,
			msg: `the property of sum must be a literal string like "revenue"`},
		{src: `traits.name == "Zoë" && cnt("a")`, line: 1, col: 25,
			msg: `unknown function "cnt" (known: ` + known + `)`},
		{src: `count("order_completed", "365d")`, line: 1, col: 1,
			msg: `the rule must be true or false, but it gives a number`},
		{src: `count("order_completed", "365d") + 1`, line: 1, col: 34,
			msg: `the rule must be true or false, but it gives a number`},
		{src: `email`, line: 1, col: 1, msg: `the rule must be true or false, but it gives text`},
		{src: `["a"]`, line: 1, col: 1, msg: `the rule must be true or false, but it gives a list`},
		{src: `nil`, line: 1, col: 1, msg: `the rule must be true or false, but it gives nil`},
		{src: ``, line: 1, col: 1, msg: `the rule is empty`},
		{src: " \n ", line: 1, col: 1, msg: `the rule is empty`},
		{src: `count("a") > 0`, line: 1, col: 1,
			msg: `count takes 2 arguments, like count("page_viewed", "14d"), but has 1`},
		{src: `days_since("a", "14d") > 0`, line: 1, col: 1,
			msg: `days_since takes 1 argument, like days_since("order_completed"), but has 2`},
		{src: `distinct("a", "14d") > 0`, line: 1, col: 1,
			msg: `distinct takes 3 arguments, like distinct("product_viewed", "sku", "30d"), but has 2`},
		{src: `count("", "1d") > 0`, line: 1, col: 7, msg: `the name of count must not be empty`},
		{src: `days_to_anniversary(traits.birthday) == 0`, line: 1, col: 21,
			msg: `the trait of days_to_anniversary must be a literal string like "birthday"`},
		{src: `count("a", "0d") > 0`, line: 1, col: 12, msg: `window "0d" is empty: use a positive number, like "14d"`},
		{src: `count("a", "enrolment") > 0`, line: 1, col: 12,
			msg: `the window "enrolment" is only allowed in a sequence's step conditions, exit and goal`},
		{src: `count("a", "14x") > 0`, enrolment: true, line: 1, col: 12,
			msg: `unknown window "14x": use 30m, 12h, 14d, 8w, 1y, all or enrolment`},
		{src: `1..3 == [1, 2, 3]`, line: 1, col: 2, msg: `the range operator ".." is not allowed in rules`},
		{src: `all(traits.tags, # == "vip")`, line: 1, col: 1,
			msg: `all is not allowed in rules: functions that loop over a list are refused`},
		{src: "stage == \"decision\"\n  && len(filter(traits.tags, {# == \"vip\"})) > 0", line: 2, col: 10,
			msg: `filter is not allowed in rules: functions that loop over a list are refused`},
		{src: `traits.tags | map(# + "x") | len() > 0`, line: 1, col: 15,
			msg: `map is not allowed in rules: functions that loop over a list are refused`},
		{src: `::count(traits.tags, # == "x") > 1`, line: 1, col: 3,
			msg: `count is not allowed in rules: functions that loop over a list are refused`},
		{src: `reduce(traits.tags, #acc + 1, 0) > 1`, line: 1, col: 1,
			msg: `reduce is not allowed in rules: functions that loop over a list are refused`},
		{src: `len(repeat("ab", 1000000)) > 1`, line: 1, col: 5, msg: `repeat is not allowed in rules`},
		{src: `len(split(email, "@")) > 1`, line: 1, col: 5, msg: `split is not allowed in rules`},
		{src: `now().Year() > 2000`, line: 1, col: 7,
			msg: `only functions can be called in rules (known: ` + known + `)`},
		{src: `now() > date("2020-01-01")`, line: 1, col: 1,
			msg: `now is not allowed in rules: use days_since, days_in_stage or days_to_anniversary`},
		{src: `event.timestamp.Unix() > 0`, line: 1, col: 17,
			msg: `only functions can be called in rules (known: ` + known + `)`},
		{src: `email matches traits.pattern`, line: 1, col: 15,
			msg: `the pattern of matches must be a literal string like "^vip"`},
		{src: `email matches "(vip"`, line: 1, col: 15,
			msg: "the pattern of matches is not a valid regular expression: error parsing regexp: missing closing ): `(vip`"},
		{src: `let n = count("a", "1d"); n > 1`, line: 1, col: 5,
			msg: `let is not allowed in rules: write the expression where it is used`},
		{src: `foo > 1`, line: 1, col: 1,
			msg: `unknown variable "foo" (known: stage, days_in_stage, traits, email, event)`},
		{src: `$env.stage == "decision"`, line: 1, col: 1,
			msg: `unknown variable "$env" (known: stage, days_in_stage, traits, email, event)`},
		{src: `$num[0] > 1`, line: 1, col: 1,
			msg: `unknown variable "$num" (known: stage, days_in_stage, traits, email, event)`},
		{src: `ever > 1`, line: 1, col: 1, msg: `ever is a function: call it, like ever("review_posted")`},
		{src: `stage == "retension"`, line: 1, col: 10,
			msg: `unknown stage "retension" (valid: awareness, consideration, decision, retention, advocacy)`},
		{src: "stage in [\"retention\",\n \"advocate\"]", line: 2, col: 2,
			msg: `unknown stage "advocate" (valid: awareness, consideration, decision, retention, advocacy)`},
		{src: `event.nam == "order_completed"`, line: 1, col: 7,
			msg: `event has no field "nam" (fields: name, properties, timestamp)`},
		{src: "ever(\"x\") &&\n  ever(\"y\") > 1", line: 2, col: 13,
			msg: `invalid operation: > (mismatched types bool and int)`},
		{src: "count(\"a\", \"1d\") >= 1 &&", line: 1, col: 24, msg: `unexpected token EOF`},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tt.src, CompileOptions{AllowEnrolment: tt.enrolment})
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("Compile(%q) = %v, %v, want a *RuleError", tt.src, p, err)
			}
			want := RuleError{Line: tt.line, Column: tt.col, Msg: tt.msg}
			if *re != want {
				t.Fatalf("Compile(%q) error\n got: %s\nwant: %s", tt.src, re, &want)
			}
		})
	}
}

func TestCompileLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		src       string
		line, col int
		msg       string
	}{
		{
			name: "4001 characters",
			src:  "email == \"" + strings.Repeat("x", 3990) + "\"",
			line: 1, col: 4001,
			msg: "the rule is too long: 4001 characters, at most 4000",
		},
		{
			name: "4001 characters on the third line",
			src:  "true\n||\n" + strings.Repeat("(", 2000) + strings.Repeat(")", 1993),
			line: 3, col: 3993,
			msg: "the rule is too long: 4001 characters, at most 4000",
		},
		{
			name: "301 nodes",
			src:  "true" + strings.Repeat(" || true", 150),
			line: 1, col: 1204,
			msg: "the rule is too complex: more than 300 parts; split it into simpler rules",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile(tt.src, CompileOptions{})
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("Compile = %v, want a *RuleError", err)
			}
			want := RuleError{Line: tt.line, Column: tt.col, Msg: tt.msg}
			if *re != want {
				t.Fatalf("Compile error\n got: %s\nwant: %s", re, &want)
			}
		})
	}

	// Exactly at the limits compiles.
	atLimit := []string{
		"email == \"" + strings.Repeat("x", 3989) + "\"",
		"true" + strings.Repeat(" || true", 149), // 299 nodes
	}
	for _, src := range atLimit {
		if _, err := Compile(src, CompileOptions{}); err != nil {
			t.Errorf("Compile(%d characters) = %v, want no error", len(src), err)
		}
	}
}

func TestCompileAggregates(t *testing.T) {
	t.Parallel()
	const d = 24 * time.Hour
	tests := []struct {
		src           string
		enrolment     bool
		aggregates    []Aggregate
		anniversaries []string
	}{
		{
			src: `count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`,
			aggregates: []Aggregate{
				{Kind: AggCount, Event: "page_viewed", Window: Window{Dur: 14 * d}},
				{Kind: AggCount, Event: "email_clicked", Window: Window{Dur: 14 * d}},
			},
		},
		{
			// "2w" and "14d" are the same window, so the same fact.
			src: `count("page_viewed", "2w") >= 3 && count("page_viewed", "14d") < 10 && ever("page_viewed")`,
			aggregates: []Aggregate{
				{Kind: AggCount, Event: "page_viewed", Window: Window{Dur: 14 * d}},
				{Kind: AggEver, Event: "page_viewed"},
			},
		},
		{
			src: `sum("order_completed", "revenue", "1y") > 500 && distinct("product_viewed", "sku", "all") >= 3 && days_since("order_completed") < 30`,
			aggregates: []Aggregate{
				{Kind: AggSum, Event: "order_completed", Property: "revenue", Window: Window{Dur: 365 * d}},
				{Kind: AggDistinct, Event: "product_viewed", Property: "sku", Window: Window{All: true}},
				{Kind: AggDaysSince, Event: "order_completed"},
			},
		},
		{
			src:       `count("order_completed", "enrolment") > 0`,
			enrolment: true,
			aggregates: []Aggregate{
				{Kind: AggCount, Event: "order_completed", Window: Window{Enrolment: true}},
			},
		},
		{
			src:           `days_to_anniversary("birthday") == 0 || days_to_anniversary("signed_up_at") == 0 || days_to_anniversary("birthday") == 7`,
			anniversaries: []string{"birthday", "signed_up_at"},
		},
		{src: `stage == "decision"`},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tt.src, CompileOptions{AllowEnrolment: tt.enrolment})
			if err != nil {
				t.Fatal(err)
			}
			if p.Source != tt.src {
				t.Errorf("Source = %q, want %q", p.Source, tt.src)
			}
			if !reflect.DeepEqual(p.Aggregates, tt.aggregates) {
				t.Errorf("Aggregates = %v, want %v", p.Aggregates, tt.aggregates)
			}
			if !reflect.DeepEqual(p.Anniversaries, tt.anniversaries) {
				t.Errorf("Anniversaries = %q, want %q", p.Anniversaries, tt.anniversaries)
			}
		})
	}
}

func TestAggregateString(t *testing.T) {
	t.Parallel()
	const d = 24 * time.Hour
	tests := []struct {
		agg  Aggregate
		want string
	}{
		{Aggregate{Kind: AggCount, Event: "order_completed", Window: Window{Dur: 365 * d}}, `count("order_completed", "365d")`},
		{Aggregate{Kind: AggCount, Event: "order_completed", Window: Window{All: true}}, `count("order_completed", "all")`},
		{Aggregate{Kind: AggCount, Event: "order_completed", Window: Window{Enrolment: true}}, `count("order_completed", "enrolment")`},
		{Aggregate{Kind: AggSum, Event: "order_completed", Property: "revenue", Window: Window{Dur: 30 * time.Minute}}, `sum("order_completed", "revenue", "30m")`},
		{Aggregate{Kind: AggDistinct, Event: "product_viewed", Property: "sku", Window: Window{Dur: 12 * time.Hour}}, `distinct("product_viewed", "sku", "12h")`},
		{Aggregate{Kind: AggDaysSince, Event: "order_completed"}, `days_since("order_completed")`},
		{Aggregate{Kind: AggEver, Event: `say "hi"`}, `ever("say \"hi\"")`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := tt.agg.String(); got != tt.want {
				t.Fatalf("String() = %s, want %s", got, tt.want)
			}
			// The string is itself a rule fragment that compiles to the same fact.
			p, err := Compile(got(tt.agg)+" != nil", CompileOptions{AllowEnrolment: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Aggregates) != 1 || p.Aggregates[0] != tt.agg {
				t.Fatalf("Compile(%s).Aggregates = %v, want [%v]", tt.want, p.Aggregates, tt.agg)
			}
		})
	}
}

func got(a Aggregate) string { return a.String() }

// facts returns the facts of a contact in decision for 12.5 days, during
// the ingestion of an order.
func facts() *Facts {
	const d = 24 * time.Hour
	return &Facts{
		Now:            now,
		Stage:          Decision,
		StageEnteredAt: now.Add(-12*d - 12*time.Hour),
		Email:          "ann@example.com",
		Traits: map[string]any{
			"plan":       "pro",
			"age":        42,
			"company":    "Acme",
			"birthday":   "1990-06-15",
			"tags":       []any{"vip", "beta"},
			"nested":     map[string]any{"k": "v"},
			"first name": "Ann",
		},
		Event: &Event{
			Name:       "order_completed",
			Properties: map[string]any{"revenue": 120.5, "sku": "X1"},
			Timestamp:  now,
		},
		Values: map[Aggregate]float64{
			{Kind: AggCount, Event: "order_completed", Window: Window{All: true}}:                       3,
			{Kind: AggCount, Event: "order_completed", Window: Window{Dur: 365 * d}}:                    2,
			{Kind: AggSum, Event: "order_completed", Property: "revenue", Window: Window{Dur: 365 * d}}: 540.25,
			{Kind: AggDistinct, Event: "product_viewed", Property: "sku", Window: Window{Dur: 30 * d}}:  4,
			{Kind: AggDaysSince, Event: "order_completed"}:                                              2.5,
			{Kind: AggEver, Event: "cart_updated"}:                                                      1,
			{Kind: AggEver, Event: "review_posted"}:                                                     0,
			{Kind: AggCount, Event: "page_viewed", Window: Window{Dur: 14 * d}}:                         2,
		},
	}
}

func TestEval(t *testing.T) {
	t.Parallel()
	sweep := facts()
	sweep.Event = nil
	bare := &Facts{Now: now, Stage: Awareness, StageEnteredAt: now}
	tests := []struct {
		src   string
		facts *Facts
		want  bool
	}{
		{src: `traits.plan == "pro" || email == "" && event == nil && stage == "awareness" && days_in_stage == 0`, facts: bare, want: true},
		{src: `"vip" in traits || len(traits) > 0 || !ever("x") && days_since("x") > 0 && count("x", "all") == 0`, facts: bare, want: true},
		{src: `stage == "decision"`, want: true},
		{src: `stage in ["retention", "advocacy"]`, want: false},
		{src: `stage not in ["retention", "advocacy"]`, want: true},
		{src: `days_in_stage > 12.4 && days_in_stage < 12.6`, want: true},
		{src: `email endsWith "@example.com" && email startsWith "ann"`, want: true},
		{src: `email matches "^ann@"`, want: true},
		{src: `email contains "bob"`, want: false},
		{src: `traits.plan == "pro"`, want: true},
		{src: `traits["first name"] == "Ann"`, want: true},
		{src: `traits.age >= 42 && traits.age < 43.5`, want: true},
		{src: `traits.missing == nil`, want: true},
		{src: `(traits.missing ?? "free") == "free"`, want: true},
		{src: `traits?.missing?.deeper == nil`, want: true},
		{src: `"vip" in traits.tags`, want: true},
		{src: `len(traits.tags) == 2`, want: true},
		{src: `lower(traits.company) == "acme" && upper(traits.plan) == "PRO"`, want: true},
		{src: `traits.nested.k == "v"`, want: true},
		{src: `traits.age > 40 ? traits.plan == "pro" : false`, want: true},
		{src: `abs(-3) == 3 && max(1, 2) == 2 && min(1, 2) == 1`, want: true},
		{src: `event.name == "order_completed" && event.properties.revenue > 100`, want: true},
		{src: `event?.name == "order_completed"`, want: true},
		{src: `event != nil`, want: true},
		{src: `event == nil`, facts: sweep, want: true},
		{src: `event?.name == "order_completed"`, facts: sweep, want: false},
		{src: `event?.name != "order_completed"`, facts: sweep, want: true},
		{src: `(event?.properties?.revenue ?? 0) > 100`, facts: sweep, want: false},
		{src: `event != nil && event.name == "order_completed"`, facts: sweep, want: false},
		{src: `count("order_completed", "all") == 3`, want: true},
		{src: `count("order_completed", "1y") == 2`, want: true},
		{src: `count("order_completed", "30d") == 0`, want: true},
		{src: `sum("order_completed", "revenue", "365d") > 540`, want: true},
		{src: `distinct("product_viewed", "sku", "30d") >= 4`, want: true},
		{src: `days_since("order_completed") < 3`, want: true},
		{src: `days_since("review_posted") > 1000000`, want: true},
		{src: `ever("cart_updated") && !ever("review_posted") && not ever("email_clicked")`, want: true},
		{src: `days_to_anniversary("birthday") == 0`, want: true},
		{src: `days_to_anniversary("signed_up_at") == 0`, want: false},
		{src: `max(count("page_viewed", "14d"), 5) == 5`, want: true},
		{src: `count("order_completed", "all") / count("order_completed", "365d") == 1.5`, want: true},
		{src: "count(\"order_completed\", \"all\") >= 3\n  && traits.plan == \"pro\"\n  // and a comment\n", want: true},
	}
	for _, tt := range tests {
		name := tt.src
		if tt.facts != nil {
			name += " (sweep)"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tt.src, CompileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f := tt.facts
			if f == nil {
				f = facts()
			}
			got, err := p.Eval(f)
			if err != nil || got != tt.want {
				t.Fatalf("Eval = %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}

// TestEvalDesignExamples evaluates every rule of DESIGN.md on facts that
// make it true and facts that make it false.
func TestEvalDesignExamples(t *testing.T) {
	t.Parallel()
	const d = 24 * time.Hour
	count := func(name string, w time.Duration) Aggregate {
		return Aggregate{Kind: AggCount, Event: name, Window: Window{Dur: w}}
	}
	ever := func(name string) Aggregate { return Aggregate{Kind: AggEver, Event: name} }
	daysSince := Aggregate{Kind: AggDaysSince, Event: "order_completed"}
	enrolled := Aggregate{Kind: AggCount, Event: "order_completed", Window: Window{Enrolment: true}}
	type values = map[Aggregate]float64
	tests := []struct {
		name      string
		src       string
		enrolment bool
		stage     Stage
		values    values
		want      bool
	}{
		{"engaged by views", `count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`, false, Awareness,
			values{count("page_viewed", 14*d): 3}, true},
		{"engaged by a click", `count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`, false, Awareness,
			values{count("page_viewed", 14*d): 2, count("email_clicked", 14*d): 1}, true},
		{"not engaged", `count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`, false, Awareness,
			values{count("page_viewed", 14*d): 2}, false},
		{"shopping", `count("product_viewed", "7d") >= 2 && ever("cart_updated")`, false, Consideration,
			values{count("product_viewed", 7*d): 2, ever("cart_updated"): 1}, true},
		{"browsing, no cart", `count("product_viewed", "7d") >= 2 && ever("cart_updated")`, false, Consideration,
			values{count("product_viewed", 7*d): 5}, false},
		{"three orders", `count("order_completed", "365d") >= 3 || ever("review_posted")`, false, Retention,
			values{count("order_completed", 365*d): 3}, true},
		{"a review", `count("order_completed", "365d") >= 3 || ever("review_posted")`, false, Retention,
			values{count("order_completed", 365*d): 1, ever("review_posted"): 1}, true},
		{"two orders", `count("order_completed", "365d") >= 3 || ever("review_posted")`, false, Retention,
			values{count("order_completed", 365*d): 2}, false},
		{"lapsed", `days_since("order_completed") > 90 && stage in ["retention", "advocacy"]`, false, Retention,
			values{daysSince: 91}, true},
		{"lapsed advocate", `days_since("order_completed") > 90 && stage in ["retention", "advocacy"]`, false, Advocacy,
			values{daysSince: 200}, true},
		{"recent buyer", `days_since("order_completed") > 90 && stage in ["retention", "advocacy"]`, false, Retention,
			values{daysSince: 30}, false},
		{"lapsed but in decision", `days_since("order_completed") > 90 && stage in ["retention", "advocacy"]`, false, Decision,
			values{daysSince: 120}, false},
		{"empathetic tone", `count("support_ticket_opened", "14d") > 0`, false, Retention,
			values{count("support_ticket_opened", 14*d): 1}, true},
		{"welcome exit", `stage != "awareness"`, true, Consideration, nil, true},
		{"welcome stays", `stage != "awareness"`, true, Awareness, nil, false},
		{"cart goal reached", `count("order_completed", "enrolment") > 0`, true, Decision, values{enrolled: 1}, true},
		{"cart goal not yet", `count("order_completed", "enrolment") > 0`, true, Decision, nil, false},
		{"win-back, never ordered", `days_since("order_completed") > 90`, false, Retention, nil, true},
		{"win-back, ordered recently", `days_since("order_completed") > 90`, false, Retention, values{daysSince: 4}, false},
		{"open complaint", `count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")`, false, Retention,
			values{count("support_ticket_opened", 30*d): 2, count("support_ticket_closed", 30*d): 1}, true},
		{"complaint closed", `count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")`, false, Retention,
			values{count("support_ticket_opened", 30*d): 1, count("support_ticket_closed", 30*d): 1}, false},
		{"surprise offer", `count("order_completed", "365d") >= 3`, false, Retention,
			values{count("order_completed", 365*d): 4}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tt.src, CompileOptions{AllowEnrolment: tt.enrolment})
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Eval(&Facts{Now: now, Stage: tt.stage, StageEnteredAt: now, Values: tt.values})
			if err != nil || got != tt.want {
				t.Fatalf("Eval = %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	t.Parallel()
	sweep := facts()
	sweep.Event = nil
	badBirthday := facts()
	badBirthday.Traits["birthday"] = "17/05/1990"
	tests := []struct {
		src       string
		facts     *Facts
		line, col int // of the *RuleError, when there is one
		msg       string
	}{
		{src: `traits.plan > 3`, line: 1, col: 13, msg: "evaluating rule: line 1, column 13: invalid operation: string > int"},
		{src: "stage == \"decision\" &&\n  traits.company * 2 > 1", line: 2, col: 18,
			msg: "evaluating rule: line 2, column 18: invalid operation: string * int"},
		{src: `event.name == "order_completed"`, facts: sweep, line: 1, col: 1,
			msg: "evaluating rule: line 1, column 1: cannot get name from event"},
		{src: `traits.missing`, msg: "evaluating rule: the rule must be true or false, but it gave nil"},
		{src: `traits.plan`, msg: `evaluating rule: the rule must be true or false, but it gave the text "pro"`},
		{src: `days_to_anniversary("birthday") == 0`, facts: badBirthday,
			msg: `evaluating rule: days_to_anniversary("birthday"): "17/05/1990" is not a date like 1990-05-17 or an RFC 3339 time`},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tt.src, CompileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f := tt.facts
			if f == nil {
				f = facts()
			}
			got, err := p.Eval(f)
			if err == nil || err.Error() != tt.msg {
				t.Fatalf("Eval = %v, %v, want error %q", got, err, tt.msg)
			}
			var re *RuleError
			if errors.As(err, &re) != (tt.line > 0) {
				t.Fatalf("errors.As(%v, *RuleError) = %v, want %v", err, re != nil, tt.line > 0)
			}
			if re != nil && (re.Line != tt.line || re.Column != tt.col) {
				t.Fatalf("RuleError at %d:%d, want %d:%d", re.Line, re.Column, tt.line, tt.col)
			}
			if _, _, err := p.EvalTrace(f); err == nil || err.Error() != tt.msg {
				t.Fatalf("EvalTrace error = %v, want %q", err, tt.msg)
			}
		})
	}
}

func TestEvalTrace(t *testing.T) {
	t.Parallel()
	sweep := facts()
	sweep.Event = nil
	tests := []struct {
		src   string
		facts *Facts
		want  bool
		obs   []Observation
	}{
		{
			src:  `count("order_completed", "all") >= 3 && stage == "decision" && days_in_stage > 10 && count("order_completed", "all") < 10`,
			want: true,
			obs: []Observation{
				{`count("order_completed", "all")`, 3.0},
				{"stage", "decision"},
				{"days_in_stage", 12.5},
			},
		},
		{
			src:  `ever("review_posted") || ever("cart_updated") && days_since("order_completed") < 7 && days_since("email_clicked") > 1`,
			want: true,
			obs: []Observation{
				{`ever("review_posted")`, false},
				{`ever("cart_updated")`, true},
				{`days_since("order_completed")`, 2.5},
				{`days_since("email_clicked")`, math.Inf(1)},
			},
		},
		{
			src:  `sum("order_completed", "revenue", "1y") > 1000 || traits.plan == "pro" && traits["first name"] == "Ann" && traits.nested.k == "v" && traits.missing == nil`,
			want: true,
			obs: []Observation{
				{`sum("order_completed", "revenue", "365d")`, 540.25},
				{"traits.plan", "pro"},
				{`traits["first name"]`, "Ann"},
				{"traits.nested.k", "v"},
				{"traits.missing", nil},
			},
		},
		{
			src:  `event?.name == "order_completed" && event.properties.revenue > 100 && email != "" && days_to_anniversary("birthday") == 0`,
			want: true,
			obs: []Observation{
				{"event.name", "order_completed"},
				{"event.properties.revenue", 120.5},
				{"email", "ann@example.com"},
				{`days_to_anniversary("birthday")`, 0.0},
			},
		},
		{
			src:   `event?.name == "order_completed" || "vip" in traits.tags`,
			facts: sweep,
			want:  true,
			obs: []Observation{
				{"event.name", nil},
				{"traits.tags", []any{"vip", "beta"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tt.src, CompileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f := tt.facts
			if f == nil {
				f = facts()
			}
			got, obs, err := p.EvalTrace(f)
			if err != nil || got != tt.want {
				t.Fatalf("EvalTrace = %v, %v, want %v", got, err, tt.want)
			}
			if !reflect.DeepEqual(obs, tt.obs) {
				t.Fatalf("observations\n got: %#v\nwant: %#v", obs, tt.obs)
			}
		})
	}
}

func TestEvalConcurrent(t *testing.T) {
	t.Parallel()
	p, err := Compile(`count("order_completed", "all") >= 3 && traits.plan == "pro"`, CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes, no := facts(), facts()
	no.Traits = map[string]any{"plan": "free"}
	done := make(chan error)
	for i := range 8 {
		go func() {
			f, want := yes, true
			if i%2 == 1 {
				f, want = no, false
			}
			for range 1000 {
				if got, err := p.Eval(f); err != nil || got != want {
					done <- errors.New("concurrent Eval gave a wrong answer")
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestNeeds(t *testing.T) {
	t.Parallel()
	const d = 24 * time.Hour
	compile := func(src string) *Program {
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := compile(`count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`)
	b := compile(`count("email_clicked", "2w") >= 1 && ever("cart_updated")`)
	c := compile(`stage == "decision"`)
	got := Needs(a, nil, b, c)
	want := []Aggregate{
		{Kind: AggCount, Event: "page_viewed", Window: Window{Dur: 14 * d}},
		{Kind: AggCount, Event: "email_clicked", Window: Window{Dur: 14 * d}},
		{Kind: AggEver, Event: "cart_updated"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Needs = %v, want %v", got, want)
	}
	if got := Needs(); got != nil {
		t.Fatalf("Needs() = %v, want nil", got)
	}
}

// FuzzCompile checks that no input makes Compile or Eval panic, that every
// compile error has a position inside the rule, and that what compiles
// evaluates to a bool or an error.
func FuzzCompile(f *testing.F) {
	f.Add(`count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`)
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Compile(src, CompileOptions{AllowEnrolment: true})
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("Compile(%q) error %v (%T) is not a *RuleError", src, err, err)
			}
			lines := strings.Count(src, "\n") + 1
			if re.Line < 1 || re.Line > lines || re.Column < 1 || re.Msg == "" {
				t.Fatalf("Compile(%q) error %q has a position outside the rule", src, re)
			}
			return
		}
		for _, fs := range []*Facts{facts(), {Now: now}} {
			if _, _, err := p.EvalTrace(fs); err != nil && err.Error() == "" {
				t.Fatalf("Eval(%q) gave an empty error", src)
			}
		}
	})
}

func BenchmarkEval(b *testing.B) {
	benchmarks := []struct{ name, src string }{
		{"engaged", `count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`},
		{"lapsed", `days_since("order_completed") > 90 && stage in ["retention", "advocacy"]`},
		{"traits", `traits.plan == "pro" && email endsWith "@example.com" && days_in_stage > 7`},
		{"birthday", `days_to_anniversary("birthday") == 0`},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			p, err := Compile(bm.src, CompileOptions{})
			if err != nil {
				b.Fatal(err)
			}
			f := facts()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Eval(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
