package rule

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The rules of DESIGN.md and the benchmark's run natively.
func TestNativeCoversTypicalRules(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1`,
		`count("product_viewed", "7d") >= 2 && ever("cart_updated")`,
		`count("order_completed", "365d") >= 3 || ever("review_posted")`,
		`days_since("order_completed") > 90 && stage in ["retention", "advocacy"]`,
		`distinct("product_viewed", "product_id", "30d") >= 4`,
		`sum("order_completed", "revenue", "1y") >= 500 && count("support_ticket_opened", "30d") == 0`,
		`days_since("page_viewed") > 60 && days_since("email_clicked") > 60 && !(count("order_completed", "90d") >= 1)`,
		`count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")`,
		`days_in_stage > 30 and stage not in ["awareness"]`,
	} {
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if p.native == nil {
			t.Errorf("%s: not run natively", src)
		}
	}
	for _, src := range []string{
		`email endsWith "@example.com"`,
		`traits.plan == "pro"`,
		`len(email) > 3`,
		`(count("page_viewed", "14d") > 1 ? 1 : 2) == 1`,
	} {
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if p.native != nil {
			t.Errorf("%s: run natively, but it is outside the subset", src)
		}
	}
}

// ruleGen writes random rules over aggregates, days_in_stage, stage and a
// few things outside the native subset.
type ruleGen struct{ r *rand.Rand }

func (g ruleGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g ruleGen) num(d int) string {
	if d <= 0 {
		return g.pick(`count("a", "14d")`, `count("b", "all")`, `sum("a", "v", "30d")`, `distinct("b", "p", "1y")`,
			`days_since("a")`, `days_since("c")`, `days_in_stage`, `0`, `1`, `3`, `0.5`, `2.25`, `90`, `days_to_anniversary("birthday")`)
	}
	switch g.r.IntN(5) {
	case 0:
		return "-" + g.num(d-1)
	case 1:
		return "(" + g.num(d-1) + ")"
	case 2, 3:
		return g.num(d-1) + " " + g.pick("+", "-", "*", "/") + " " + g.num(d-1)
	}
	return g.num(0)
}

func (g ruleGen) boolean(d int) string {
	if d <= 0 {
		switch g.r.IntN(6) {
		case 0:
			return g.pick(`ever("a")`, `ever("c")`, `true`, `false`)
		case 1:
			return `stage ` + g.pick("in", "not in") + ` ["retention", "advocacy"]`
		case 2:
			return `stage ` + g.pick("==", "!=") + ` "decision"`
		case 3:
			return g.pick(`email == ""`, `traits.plan == "pro"`, `len(email) > 3`)
		}
		return g.num(1) + " " + g.pick("==", "!=", "<", "<=", ">", ">=") + " " + g.num(1)
	}
	switch g.r.IntN(5) {
	case 0:
		return g.pick("!", "not ") + "(" + g.boolean(d-1) + ")"
	case 1, 2:
		return "(" + g.boolean(d-1) + ") " + g.pick("&&", "||", "and", "or") + " (" + g.boolean(d-1) + ")"
	}
	return g.boolean(0)
}

// The native form of a rule gives what expr's VM gives, on random rules
// and facts (zeros, infinities, NaN, fractions, every stage).
func TestNativeEqualsVM(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(11, 12))
	g := ruleGen{r}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	vals := []float64{0, 1, 2, 3, 4, 0.5, 90, 90.5, 500, -1, math.Inf(1), math.NaN()}
	native, checked := 0, 0
	for i := 0; i < 3000; i++ {
		src := g.boolean(r.IntN(4))
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			if strings.Contains(err.Error(), "must be true or false") {
				continue
			}
			t.Fatalf("%s: %v", src, err)
		}
		if p.native != nil {
			native++
		}
		for k := 0; k < 20; k++ {
			f := &Facts{
				Now:            now,
				Stage:          Stages[r.IntN(len(Stages))],
				StageEnteredAt: now.Add(-time.Duration(r.IntN(100*24)) * time.Hour),
				Traits:         map[string]any{"plan": "pro", "birthday": "1990-11-" + fmt.Sprint(20+r.IntN(8))},
				Email:          []string{"", "ann@example.com"}[r.IntN(2)],
				Values:         map[Aggregate]float64{},
			}
			for _, a := range p.Aggregates {
				f.Values[a] = vals[r.IntN(len(vals))]
			}
			want, werr := p.eval(f, false)
			got, gerr := p.eval(f, true)
			if got != want || (werr == nil) != (gerr == nil) {
				t.Fatalf("%s with %v, stage %s: native %v (%v), VM %v (%v)", src, f.Values, f.Stage, got, gerr, want, werr)
			}
			checked++
		}
	}
	if native < 1000 {
		t.Fatalf("only %d of the random rules ran natively", native)
	}
	t.Logf("%d rules natively, %d evaluations compared", native, checked)
}
