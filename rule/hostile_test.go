package rule

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Rules built to exhaust the machine are refused when saved, with the
// place named: huge and nested expressions, ranges, string doubling,
// patterns computed at run time, and patterns whose matching would cost a
// second per contact.
func TestHostileRulesAreRefusedAtSave(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		col       int
		msg       string
	}{
		{name: "huge range", src: `len(1..1000000000) > 0`, col: 6, msg: `the range operator ".." is not allowed`},
		{name: "nested ranges", src: `count("x", "1d") in 1..10 || 1 in (1..10)`, col: 22, msg: `the range operator ".." is not allowed`},
		{name: "string doubling with repeat", src: `len(repeat(repeat(email, 1000), 1000)) > 1`, col: 5, msg: `repeat is not allowed`},
		{name: "doubling with let", src: `let a = email + email; let b = a + a; len(b + b) > 0`, col: 5, msg: `let is not allowed`},
		{name: "loop with a closure", src: `len(map(1..100, {#})) > 0`, col: 5, msg: `map is not allowed`},
		{name: "reduce", src: `reduce([1], # + #acc) > 0`, col: 1, msg: `reduce is not allowed`},
		{name: "dynamic regex from a trait", src: `email matches traits.pattern`, col: 15, msg: `must be a literal string`},
		{name: "dynamic regex built by concatenation", src: `email matches ("^" + traits.p)`, col: 16, msg: `must be a literal string`},
		{name: "pattern with many bounded repetitions", src: `email matches "` + strings.Repeat("[a-z]{0,1000}", 20) + `"`, col: 15, msg: "the pattern of matches is too complex"},
		{name: "pattern with alternations repeated", src: `traits.bio matches "(a|b|c){0,900}(d|e){0,900}"`, col: 20, msg: "the pattern of matches is too complex"},
		{name: "pattern repeated in itself", src: `email matches "((a{20}){20})"`, col: 15, msg: "the pattern of matches is too complex"},
		{name: "pattern over Go's nesting limit", src: `email matches "((((a{100}){100}){100}){100})"`, col: 15, msg: "not a valid regular expression"},
		{name: "string doubling by joining", src: "len(" + strings.Repeat("traits.s + ", 20) + "email) > 0", col: 0, msg: "the rule joins too many values with +: 20, at most 16"},
		{name: "huge expression", src: "email != \"\"" + strings.Repeat(" && email != \"\"", 120), col: 0, msg: "the rule is too complex"},
		{name: "deep nesting of not", src: strings.Repeat("!", 400) + "true", col: 0, msg: "the rule is too complex"},
		{name: "deep nesting of lists", src: strings.Repeat("[", 400) + strings.Repeat("]", 400) + " != nil", col: 0, msg: "the rule is too complex"},
		{name: "too long", src: "email == \"" + strings.Repeat("x", 5000) + "\"", col: 0, msg: "the rule is too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(tc.src, CompileOptions{})
			if err == nil {
				t.Fatalf("compiled %q", tc.src)
			}
			_ = p
			var re *Error
			if !errors.As(err, &re) || re.Line < 1 || re.Column < 1 {
				t.Fatalf("error %v (%T), want a *Error with a place", err, err)
			}
			if tc.col != 0 && re.Column != tc.col {
				t.Errorf("column %d, want %d: %v", re.Column, tc.col, err)
			}
			if !strings.Contains(re.Msg, tc.msg) {
				t.Errorf("message %q, want it to contain %q", re.Msg, tc.msg)
			}
		})
	}
}

// Patterns people write are far below the limit, and the estimate never
// undercounts what Go compiles.
func TestPatternSizeEstimate(t *testing.T) {
	for _, pat := range []string{
		`^vip`, `@(gmail|yahoo|hotmail)\.com$`, `^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$`, `^(\+44|0)7\d{9}$`,
		`[a-z]{0,100}`, `(a|b){3,50}`, `x{2,}`, `((ab){3}c){4}`, `(?i)^(premium|gold|platinum)$`,
	} {
		re, err := syntax.Parse(pat, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		est := patternSize(re)
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		if est < len(prog.Inst)/2 {
			t.Errorf("%s: estimated %d, Go compiles %d instructions", pat, est, len(prog.Inst))
		}
		if _, err := Compile(`email matches "`+strings.ReplaceAll(pat, `\`, `\\`)+`"`, CompileOptions{}); err != nil && est <= MaxPatternSize {
			t.Errorf("%s (size %d) refused: %v", pat, est, err)
		}
	}
}

// Rules that compile but meet hostile data — a trait of 32 KB, traits
// nested 5,000 deep, a list literal of the whole traits map formatted as a
// string — finish, with bounded memory: the cost of one evaluation is at
// most the rule's size times the data's, never more.
func TestHostileRulesAreBoundedAtRun(t *testing.T) {
	big := strings.Repeat("a", 32<<10)
	var deep any = "x"
	for range 5000 {
		deep = map[string]any{"a": deep}
	}
	wide := map[string]any{}
	for i := range 300 {
		wide[fmt.Sprint("k", i)] = big[:100]
	}
	facts := &Facts{Now: time.Now(), Stage: "awareness", Email: "ann@example.com",
		Traits: map[string]any{"s": big, "deep": deep, "wide": wide, "n": 1.0},
		Event:  &Event{Name: "x", Properties: map[string]any{"deep": deep, "s": big}}}
	cat := "traits.s" + strings.Repeat(" + traits.s", 16)
	for _, tc := range []struct{ name, src string }{
		{"a string joined as often as allowed", "len(" + cat + ") > 0"},
		{"upper of it", "len(upper(" + cat + ")) > 0"},
		{"the traits formatted 96 times", "len(string([" + strings.Repeat("traits.wide, ", 95) + "traits.wide])) > 0"},
		{"deep traits compared", "traits.deep == event.properties.deep"},
		{"deep traits formatted", `string(traits.deep) != ""`},
		{"a pattern at the limit on a long trait", `traits.s matches "` + strings.Repeat("[a-z]{0,99}", 2) + `b"`},
		{"index of a long string in another", `indexOf(traits.s + traits.s, traits.s + "b") >= 0`},
		{"numbers added without limit", "count(\"x\", \"1d\")" + strings.Repeat(" + count(\"x\", \"1d\")", 40) + " > 0"},
		{"arithmetic overflow", "traits.n * 1e308 * 1e308 > 0"},
		{"a trait of the wrong type", "traits.s > 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(tc.src, CompileOptions{})
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = p.Eval(facts)
			runtime.ReadMemStats(&after)
			if err != nil && !strings.HasPrefix(err.Error(), "evaluating rule: ") {
				t.Errorf("error %q does not say it comes from evaluating the rule", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("one evaluation allocated %d MB", alloc>>20)
			}
		})
	}
}
