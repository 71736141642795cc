package templates

import (
	"fmt"
	"strings"

	"github.com/waymark/waymark/rule"
)

// ToneRule picks Tone when When holds for the contact; the last rule has no
// condition and is the default.
type ToneRule struct {
	Tone string
	When *rule.Program // nil for the default
}

// ToneRuleSource is a tone rule as written and stored.
type ToneRuleSource struct {
	Tone string `db:"tone"`
	When string `db:"condition"` // "" for the default
}

// CompileTones compiles tone rules in order, for ChooseTone: the sender
// (once per journey version), and the previews of the CLI and the API.
// An error names the rule, from 1.
func CompileTones(src []ToneRuleSource) ([]ToneRule, error) {
	out := make([]ToneRule, len(src))
	for i, t := range src {
		out[i].Tone = t.Tone
		if t.When == "" {
			continue
		}
		p, err := rule.Compile(t.When, rule.CompileOptions{})
		if err != nil {
			return nil, fmt.Errorf("tone rule %d: %w", i+1, err)
		}
		out[i].When = p
	}
	return out, nil
}

// ToneConditions are the conditions of tone rules, for loading the facts
// they read (rule.Needs).
func ToneConditions(rules []ToneRule) []*rule.Program {
	var out []*rule.Program
	for _, r := range rules {
		if r.When != nil {
			out = append(out, r.When)
		}
	}
	return out
}

// ToneChoice is the tone an email is written in, and why.
type ToneChoice struct {
	Tone string
	// Rule is the position (from 0) of the tone rule that chose it, -1 when
	// pinned by a step or when there are no tone rules.
	Rule   int
	Reason string
}

// ChooseTone tries the tone rules in order and returns the first whose
// condition holds, with what it saw as the reason. A rule that cannot be
// evaluated for this contact (a trait of the wrong type) is passed over and
// said so in the reason: a tone is never a reason not to send.
func ChooseTone(rules []ToneRule, f *rule.Facts) ToneChoice {
	var skipped []string
	for i, r := range rules {
		if r.When == nil {
			reason := fmt.Sprintf("default tone (tone rule %d): no earlier tone rule applies", i+1)
			if len(skipped) > 0 {
				reason += "; " + strings.Join(skipped, "; ")
			}
			return ToneChoice{Tone: r.Tone, Rule: i, Reason: reason}
		}
		ok, obs, err := r.When.EvalTrace(f)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("tone rule %d (%s) could not be evaluated: %v", i+1, r.Tone, err))
			continue
		}
		if ok {
			return ToneChoice{Tone: r.Tone, Rule: i, Reason: fmt.Sprintf("tone rule %d (%s): %s, saw %s", i+1, r.Tone, r.When.Source, rule.Describe(obs))}
		}
	}
	reason := "no tone rules: the template's base"
	if len(skipped) > 0 {
		reason = "no tone rule applies: the template's base; " + strings.Join(skipped, "; ")
	}
	return ToneChoice{Tone: "", Rule: -1, Reason: reason}
}

// Pinned is the choice of a step that names its tone.
func Pinned(tone string) ToneChoice {
	return ToneChoice{Tone: tone, Rule: -1, Reason: "pinned by the sequence step"}
}
