package lifecycle

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/waymark/waymark/rule"
)

// A transition rule as written — in a journey file or in the rule editor —
// is checked here, once for both: its name, the stages it moves contacts
// out of and into, and its condition.

// ruleName is what a rule's name may be: it appears in URLs, logs and
// every stage move it makes.
var ruleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

// FieldError is a mistake in one field of a transition rule as written.
type FieldError struct {
	// Field is name, from, to or when.
	Field string
	// Index is, in from, the stage the mistake is in (from 0), or -1 when
	// it is in the list as a whole; -1 in the other fields.
	Index int
	// Err says what is wrong; in when, a *rule.Error places it in the
	// condition.
	Err error
}

// Path names the field: name, from, from[1], to or when.
func (e *FieldError) Path() string {
	if e.Index < 0 {
		return e.Field
	}
	return e.Field + "[" + strconv.Itoa(e.Index) + "]"
}

// Error returns the path and the mistake: "from[1]: decision is listed
// twice", "when: line 1, column 7: ...".
func (e *FieldError) Error() string { return e.Path() + ": " + e.Err.Error() }

// Unwrap returns the mistake.
func (e *FieldError) Unwrap() error { return e.Err }

// CheckRule checks a transition rule as written and compiles its
// condition: a name of letters, digits, _ . and - (at most 100), at least
// one stage to move contacts out of, each a stage and listed once, a stage
// to move them into that is not one of those, and a condition that
// compiles. It returns every mistake, in that order; the rule (without a
// version) is whole only when there are none.
func CheckRule(name string, from []string, to, when string) (Rule, []*FieldError) {
	var errs []*FieldError
	add := func(field string, i int, err error) {
		errs = append(errs, &FieldError{Field: field, Index: i, Err: err})
	}
	r := Rule{Name: name}
	if !ruleName.MatchString(name) {
		add("name", -1, fmt.Errorf("%q is not a rule name (letters, digits, _ . -; at most 100)", name))
	}
	if len(from) == 0 {
		add("from", -1, errors.New("name at least one stage"))
	}
	for i, f := range from {
		st, err := rule.ParseStage(f)
		switch {
		case err != nil:
			add("from", i, err)
		case slices.Contains(r.From, st):
			add("from", i, fmt.Errorf("%s is listed twice", st))
		default:
			r.From = append(r.From, st)
		}
	}
	switch st, err := rule.ParseStage(to); {
	case err != nil:
		add("to", -1, err)
	case slices.Contains(r.From, st):
		add("to", -1, fmt.Errorf("%s is also in from; a rule moves a contact to another stage", st))
	default:
		r.To = st
	}
	p, err := CompileCondition(when)
	if err != nil {
		add("when", -1, err)
	}
	r.When = p
	return r, errs
}

// CompileCondition compiles a transition rule's condition. Mistakes are a
// *rule.Error, an empty condition among them.
func CompileCondition(src string) (*rule.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &rule.Error{Line: 1, Column: 1, Msg: "the condition is empty"}
	}
	return rule.Compile(src, rule.CompileOptions{})
}
