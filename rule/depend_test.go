package rule

import (
	"testing"
)

func TestDependencies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rule    string
		matters []string // single event names that matter
		not     []string // single event names that do not
	}{
		{`count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`, []string{"page_viewed", "email_clicked", "identify", "alias"}, []string{"cart_updated", "email_clicked_machine", "group"}},
		{`sum("order_completed", "revenue", "1y") >= 500`, []string{"order_completed"}, []string{"page_viewed"}},
		{`distinct("product_viewed", "sku", "30d") >= 4 && days_since("cart_updated") < 2`, []string{"product_viewed", "cart_updated"}, []string{"order_completed"}},
		{`ever("email_opened_machine")`, []string{"email_opened_machine", "email_opened"}, []string{"email_clicked"}},
		{`days_in_stage > 3 && stage == "awareness"`, []string{"identify"}, []string{"page_viewed"}},
		{`event.name == "x"`, []string{"page_viewed", "anything"}, nil},
		{`(event?.properties.revenue ?? 0) > 10`, []string{"page_viewed"}, nil},
		{`traits.plan == "pro"`, []string{"identify"}, []string{"page_viewed"}},
		// Polarity: events that can only make the rule false do not matter.
		{`days_since("order_completed") > 90 && sum("order_completed", "revenue", "all") > 0`, []string{"order_completed"}, nil},
		{`days_since("order_completed") > 90 && count("page_viewed", "7d") >= 1`, []string{"page_viewed"}, []string{"order_completed"}},
		{`days_since("page_viewed") > 60 && days_since("email_clicked") > 60 && !(count("order_completed", "90d") >= 1)`, nil, []string{"page_viewed", "email_clicked", "order_completed"}},
		{`count("support_ticket_opened", "30d") == 0 && ever("x")`, []string{"support_ticket_opened", "x"}, nil},
		{`count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")`, []string{"support_ticket_opened"}, []string{"support_ticket_closed"}},
		{`count("a", "7d") - count("b", "7d") >= 2`, []string{"a"}, []string{"b"}},
		{`days_since("a") < 2 || !ever("b")`, []string{"a"}, []string{"b"}},
		{`count("a", "7d") * 2 >= 4`, []string{"a"}, nil},
		{`(count("a", "7d") > 1 ? count("b", "7d") : 0) >= 1`, []string{"a", "b"}, nil},
	} {
		p, err := Compile(tc.rule, CompileOptions{})
		if err != nil {
			t.Fatalf("%s: %v", tc.rule, err)
		}
		var d Dependencies
		d.AddProgram(p)
		for _, n := range tc.matters {
			if !d.Matters([]string{n}) {
				t.Errorf("%s: %s should matter", tc.rule, n)
			}
		}
		for _, n := range tc.not {
			if d.Matters([]string{n}) {
				t.Errorf("%s: %s should not matter", tc.rule, n)
			}
			if !d.Matters([]string{n, "identify"}) {
				t.Errorf("%s: %s with an identify should matter", tc.rule, n)
			}
		}
		if !d.Matters(nil) {
			t.Errorf("%s: a touch without names should matter", tc.rule)
		}
	}
}

func TestTrueWithoutHistory(t *testing.T) {
	t.Parallel()
	for src, want := range map[string]bool{
		`count("page_viewed", "14d") >= 3`:  false,
		`!ever("order_completed")`:          true,
		`days_since("page_viewed") > 60`:    true,
		`count("x", "30d") == 0`:            true,
		`traits.plan == "pro"`:              false,
		`days_in_stage > 3`:                 false,
		`stage == "awareness" && ever("x")`: false,
	} {
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := TrueWithoutHistory(p, Awareness); got != want {
			t.Errorf("%s: %v, want %v", src, got, want)
		}
	}
}
