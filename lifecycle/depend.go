package lifecycle

import (
	"slices"

	"github.com/waymark/waymark/rule"
)

// StageDependencies are, for each stage, what can change the outcome for a
// contact in it: the rules that can move a contact out of a stage are the
// ones whose from holds it, so an event that only rules of other stages
// read cannot move it (what was true before the event was the sweep's to
// act on). Indexed like [rule.Stages].
type StageDependencies [5]rule.Dependencies

// StageDependenciesOf returns what the rules read, by stage. A new
// contact starts in the first stage without having been evaluated: if a
// rule from it holds for a contact with no history at all, every event
// matters there (it may be a new contact's first).
func StageDependenciesOf(rules []Rule) StageDependencies {
	var out StageDependencies
	for i, st := range rule.Stages {
		for _, r := range rules {
			if slices.Contains(r.From, st) {
				out[i].AddProgram(r.When)
				if i == 0 && rule.TrueWithoutHistory(r.When, st) {
					out[i].AddAll()
				}
			}
		}
	}
	return out
}

// ReadEvent reports whether a program of some stage reads the event
// variable.
func (s *StageDependencies) ReadEvent() bool {
	for i := range s {
		if s[i].Event {
			return true
		}
	}
	return false
}

// Merge adds o, which holds in every stage.
func (s *StageDependencies) Merge(o rule.Dependencies) {
	for i := range s {
		s[i].Merge(o)
	}
}

// Mask returns the stages (bit i for Stages[i]) in which new events named
// names can change an outcome; 0: in none.
func (s *StageDependencies) Mask(names []string) uint8 {
	var m uint8
	for i := range s {
		if s[i].Matters(names) {
			m |= 1 << i
		}
	}
	return m
}

func (s StageDependencies) clone() StageDependencies {
	var out StageDependencies
	for i := range s {
		out[i].Merge(s[i])
	}
	return out
}
