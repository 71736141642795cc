package journey

import (
	"errors"
	"strings"
	"testing"

	"github.com/waymark/waymark/rule"
)

const designExample = `rules:
  - name: engaged-visitor
    from: [awareness]
    to: consideration
    when: count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1
  - name: buyer
    from: [consideration, decision]
    to: retention
    when: |
      count("order_completed", "365d") >= 1
  - name: lapsed
    from: [retention, advocacy]
    to: decision
    when: days_since("order_completed") > 90 && stage in ["retention", "advocacy"]
`

func TestParseDesignExample(t *testing.T) {
	t.Parallel()
	j, err := Parse("journey.yaml", []byte(designExample))
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Rules) != 3 || len(j.Programs) != 3 {
		t.Fatalf("got %d rules, %d programs", len(j.Rules), len(j.Programs))
	}
	r := j.Rules[1]
	if r.Name != "buyer" || r.To != rule.Retention || len(r.From) != 2 || r.From[1] != rule.Decision || r.Pos.Line != 6 {
		t.Fatalf("rule %+v", r)
	}
}

func TestParseErrorsNamePlaces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []string // every error, "line:col: fragment"
	}{
		{"unknown function in plain scalar", "rules:\n  - name: a\n    from: awareness\n    to: decision\n    when: cnt(\"x\", \"14d\") > 1\n",
			[]string{`5:11: rule "a": when: `}},
		{"error on second line of a block scalar", "rules:\n  - name: a\n    from: awareness\n    to: decision\n    when: |\n      count(\"x\", \"14d\") > 1 &&\n        count(\"y\", \"14x\") > 0\n",
			[]string{`7:20: rule "a": when: unknown window "14x"`}},
		{"typo in a key", "rules:\n  - name: a\n    from: awareness\n    to: decision\n    wehn: ever(\"x\")\n",
			[]string{`2:5: rule "a": missing when`, `5:5: rule "a": unknown key "wehn" (known: from, name, to, when); did you mean "when"?`}},
		{"unknown stage", "rules:\n  - name: a\n    from: [awarenes]\n    to: decision\n    when: ever(\"x\")\n",
			[]string{`3:12: from: `}},
		{"duplicate names", "rules:\n  - name: a\n    from: awareness\n    to: decision\n    when: ever(\"x\")\n  - name: a\n    from: decision\n    to: retention\n    when: ever(\"y\")\n",
			[]string{`6:11: rule "a": the name is already used by the rule at line 2`}},
		{"unknown section", "rule:\n  - name: a\n", []string{`1:1: the journey: unknown key "rule"`}},
		{"not yaml", "rules: [\n", []string{`not valid YAML`}},
		{"non-boolean", "rules:\n  - name: a\n    from: awareness\n    to: decision\n    when: count(\"x\", \"all\")\n",
			[]string{`5:11: rule "a": when: `}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantErrors(t, tt.src, tt.want)
		})
	}
}

// parseErrors parses src as j.yaml, which must fail with Errors.
func parseErrors(t *testing.T, src string) Errors {
	t.Helper()
	_, err := Parse("j.yaml", []byte(src))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want Errors", err)
	}
	return errs
}

// wantErrors parses src as j.yaml and checks that it fails with exactly
// the errors want ("line:col: fragment" each), in order.
func wantErrors(t *testing.T, src string, want []string) {
	t.Helper()
	errs := parseErrors(t, src)
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if !strings.Contains(errs[i].Error(), "j.yaml:"+w) && !strings.Contains(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want it to contain %q", i, errs[i].Error(), "j.yaml:"+w)
		}
	}
}
