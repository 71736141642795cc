package templates

import (
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/rule"
)

func TestChooseTone(t *testing.T) {
	t.Parallel()
	compile := func(src string) *rule.Program {
		p, err := rule.Compile(src, rule.CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := compile(`count("support_ticket_opened", "14d") > 0`)
	rules := []ToneRule{
		{Tone: "empathetic", When: open},
		{Tone: "formal", When: compile(`traits.company != nil`)},
		{Tone: "celebratory", When: compile(`stage == "advocacy" && days_in_stage < 14`)},
		{Tone: "friendly"},
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ticket := rule.Aggregate{Kind: rule.AggCount, Event: "support_ticket_opened", Window: rule.Window{Dur: 14 * 24 * time.Hour}}
	tests := []struct {
		name   string
		facts  rule.Facts
		tone   string
		reason string
	}{
		{"open complaint wins over company", rule.Facts{Now: now, Stage: "retention", Traits: map[string]any{"company": "Acme"}, Values: map[rule.Aggregate]float64{ticket: 1}},
			"empathetic", `tone rule 1 (empathetic): count("support_ticket_opened", "14d") > 0, saw count("support_ticket_opened", "14d") = 1`},
		{"business buyer", rule.Facts{Now: now, Stage: "decision", Traits: map[string]any{"company": "Acme"}}, "formal", "tone rule 2 (formal)"},
		{"new advocate", rule.Facts{Now: now, Stage: "advocacy", StageEnteredAt: now.Add(-48 * time.Hour), Traits: map[string]any{}}, "celebratory", "days_in_stage = 2"},
		{"everyone else", rule.Facts{Now: now, Stage: "awareness", StageEnteredAt: now, Traits: map[string]any{}}, "friendly", "default tone (tone rule 4)"},
	}
	for _, tt := range tests {
		c := ChooseTone(rules, &tt.facts)
		if c.Tone != tt.tone || !strings.Contains(c.Reason, tt.reason) {
			t.Errorf("%s: %q because %q; want %q because …%s…", tt.name, c.Tone, c.Reason, tt.tone, tt.reason)
		}
	}
	if c := ChooseTone(nil, &rule.Facts{}); c.Tone != "" || c.Rule != -1 {
		t.Errorf("no rules: %+v", c)
	}
}
