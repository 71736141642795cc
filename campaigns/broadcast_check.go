package campaigns

import (
	"fmt"
	"strings"

	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// FieldError is a mistake in one field of a definition, named as the
// journey file and the API write it ("test.share").
type FieldError struct {
	Field string
	Msg   string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// ValidName reports whether s can name a broadcast or a segment:
// lower-case letters, digits, - and _, at most 100.
func ValidName(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Check lists what is wrong with a broadcast as defined, field by field;
// the templates and the segment it names are checked by the caller, who
// knows them (CheckSubject checks a variant's subject line).
func (b *Broadcast) Check() []FieldError {
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !ValidName(b.Name) {
		bad("name", "a name is lower-case letters, digits, - and _ (at most 100), not %q", b.Name)
	}
	if strings.TrimSpace(b.Template) == "" {
		bad("template", "missing: the template the broadcast sends")
	}
	seen := map[rule.Stage]bool{}
	for _, st := range b.Audience.Stages {
		if _, err := rule.ParseStage(string(st)); err != nil {
			bad("audience.stages", "%v", err)
		} else if seen[st] {
			bad("audience.stages", "stage %q is listed twice", st)
		}
		seen[st] = true
	}
	if b.Audience.Segment != "" && !ValidName(b.Audience.Segment) {
		bad("audience.segment", "%q is not a segment's name", b.Audience.Segment)
	}
	if b.SendAt != "" {
		if _, _, err := ParseSendAt(b.SendAt); err != nil {
			bad("send_at", "%v", err)
		}
	}
	if b.Schedule != "" {
		if _, _, err := ParseSchedule(b.Schedule); err != nil {
			bad("schedule", "%v", err)
		}
		if b.SendAt != "" {
			bad("schedule", "give send_at (once) or schedule (a cron spec), not both")
		}
	}
	if b.Throttle < 0 || b.Throttle > 1e6 {
		bad("throttle", "emails a second: a number above 0 (50 = at most 50 emails a second), or 0 for none")
	}
	if t := b.Test; t != nil {
		if len(t.Variants) < 2 || len(t.Variants) > MaxVariants {
			bad("test.variants", "2 to %d variants: templates, or {subject: ...} to try subject lines", MaxVariants)
		}
		for i, v := range t.Variants {
			field := fmt.Sprintf("test.variants[%d]", i)
			switch {
			case v.Template == "" && strings.TrimSpace(v.Subject) == "":
				bad(field, "give a template or a subject")
			case v.Subject != "" && strings.TrimSpace(v.Subject) == "":
				bad(field+".subject", "the subject is empty")
			}
			for j := range i {
				if t.Variants[j] == v {
					bad(field, "the same as variant %d", j+1)
				}
			}
		}
		if t.Share <= 0 || t.Share >= 1 {
			bad("test.share", "the part of the audience the variants are tried on, above 0 and below 1 (0.2 = 20%%; the winner goes to the rest)")
		}
		switch t.PickBy {
		case PickOpens, PickClicks, PickConversions:
		default:
			bad("test.pick_by", "opens, clicks (people, not machines) or conversions (credited to the variant's email), not %q", t.PickBy)
		}
		if t.After <= 0 {
			bad("test.after", "the wait before the winner is picked, more than 0 (4h)")
		}
		if t.MinResults < 0 {
			bad("test.min_results", "a whole number of people, at least 1")
		}
	}
	return errs
}

// CheckSubject checks a test variant's subject line against the template
// it is tried on, as the template's own subject is checked.
func CheckSubject(t templates.Template, subject string) error {
	_, err := templates.Compile(WithSubject(t, subject))
	return err
}
