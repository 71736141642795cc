package journey

import (
	"reflect"
	"slices"
	"testing"

	"github.com/waymark/waymark/campaigns"
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

// Segments are diffed by condition and place: a new condition is a
// change, the same condition elsewhere a move, a segment no longer in the
// journey a removal (last).
func TestDiffSegments(t *testing.T) {
	t.Parallel()
	stored := []StoredSegment{
		{Name: "vip", Position: 0, Condition: `sum("order_completed", "revenue", "365d") >= 500`},
		{Name: "lapsed", Position: 1, Condition: `days_since("order_completed") > 90`},
		{Name: "readers", Position: 2, Condition: `count("article_read", "30d") >= 3`},
	}
	segs := []campaigns.Segment{
		{Name: "readers", When: `count("article_read", "30d") >= 3`},
		{Name: "vip", When: `sum("order_completed", "revenue", "365d") >= 1000`},
		{Name: "new", When: `days_since("signed_up") < 7`},
	}
	got := DiffSegments(stored, segs)
	want := []Edit{
		{Op: Moved, Name: "readers", Position: 0, Index: 0},
		{Op: Changed, Name: "vip", Position: 1, Index: 1},
		{Op: Added, Name: "new", Position: 2, Index: 2},
		{Op: Removed, Name: "lapsed", Index: -1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("edits %+v, want %+v", got, want)
	}
	if same := DiffSegments(stored, []campaigns.Segment{{Name: "vip", When: stored[0].Condition}, {Name: "lapsed", When: stored[1].Condition}, {Name: "readers", When: stored[2].Condition}}); len(same) != 0 {
		t.Errorf("the same segments: edits %+v, want none", same)
	}
}
