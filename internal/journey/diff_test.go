package journey

import (
	"slices"
	"testing"

	"github.com/waymark/waymark/rule"
)

// Diff writes what is new or different (JSON compared as values) at its
// next version, moves what changed place, and removes what the journey no
// longer has, last.
func TestDiff(t *testing.T) {
	t.Parallel()
	stored := []Stored{
		{Name: "welcome", Version: 2, Position: 0, Body: []byte(`{"a": 1, "b": [1, 2]}`)},
		{Name: "nurture", Version: 1, Position: 1, Body: []byte(`{"a": 2}`)},
		{Name: "old", Version: 3, Position: 2, Body: []byte(`{}`)},
		{Name: "same", Version: 1, Position: 3, Body: []byte(`{"x": true}`)},
	}
	next := []Stored{
		{Name: "nurture", Position: 0, Body: []byte(`{"a":2}`)},
		{Name: "welcome", Position: 1, Body: []byte(`{"b":[1,2],"a":1,"c":0}`)},
		{Name: "new", Position: 2, Body: []byte(`{}`)},
		{Name: "same", Position: 3, Body: []byte(` {"x" : true} `)},
	}
	want := []Edit{
		{Op: Moved, Name: "nurture", Position: 0, Index: 0, Version: 1},
		{Op: Changed, Name: "welcome", Position: 1, Index: 1, Version: 2},
		{Op: Added, Name: "new", Position: 2, Index: 2},
		{Op: Removed, Name: "old", Index: -1, Version: 3},
	}
	if got := Diff(stored, next); !slices.Equal(got, want) {
		t.Errorf("edits\n%+v\nwant\n%+v", got, want)
	}
}

// DiffRules compares a rule's from, to and condition.
func TestDiffRules(t *testing.T) {
	t.Parallel()
	stored := []StoredRule{
		{Name: "a", Version: 1, Position: 0, From: []string{"awareness"}, To: "consideration", Condition: "true"},
		{Name: "b", Version: 4, Position: 1, From: []string{"consideration"}, To: "decision", Condition: "false"},
		{Name: "c", Version: 1, Position: 2, From: []string{"decision"}, To: "retention", Condition: "true"},
	}
	rules := []Rule{
		{Name: "b", From: []rule.Stage{"consideration"}, To: "decision", When: "false"},
		{Name: "a", From: []rule.Stage{"awareness", "decision"}, To: "consideration", When: "true"},
	}
	want := []Edit{
		{Op: Moved, Name: "b", Position: 0, Index: 0, Version: 4},
		{Op: Changed, Name: "a", Position: 1, Index: 1, Version: 1},
		{Op: Removed, Name: "c", Index: -1, Version: 1},
	}
	if got := DiffRules(stored, rules); !slices.Equal(got, want) {
		t.Errorf("edits\n%+v\nwant\n%+v", got, want)
	}
	// Saved from the editor: in place of the rule of its name, or last.
	edited := Rule{Name: "b", To: "retention", When: "true"}
	if got := WithRule(stored, edited); len(got) != 3 || got[1].Name != "b" || got[1].To != "retention" || got[0].Name != "a" || got[2].Name != "c" {
		t.Errorf("saving b: %+v", got)
	}
	if got := WithRule(stored, Rule{Name: "d"}); len(got) != 4 || got[3].Name != "d" {
		t.Errorf("saving a new rule: %+v", got)
	}
}
