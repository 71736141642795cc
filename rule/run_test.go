package rule

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

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
		line, col int // of the *Error, when there is one
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
			var re *Error
			if errors.As(err, &re) != (tt.line > 0) {
				t.Fatalf("errors.As(%v, *Error) = %v, want %v", err, re != nil, tt.line > 0)
			}
			if re != nil && (re.Line != tt.line || re.Column != tt.col) {
				t.Fatalf("Error at %d:%d, want %d:%d", re.Line, re.Column, tt.line, tt.col)
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
