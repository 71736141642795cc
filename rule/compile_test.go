package rule

import (
	"errors"
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
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Compile(%q) = %v, %v, want a *Error", tt.src, p, err)
			}
			want := Error{Line: tt.line, Column: tt.col, Msg: tt.msg}
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
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Compile = %v, want a *Error", err)
			}
			want := Error{Line: tt.line, Column: tt.col, Msg: tt.msg}
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
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Compile(%q) error %v (%T) is not a *Error", src, err, err)
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
