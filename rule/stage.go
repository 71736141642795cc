package rule

import (
	"fmt"
	"strings"
)

// Stage is a step of the customer journey. Contacts move forwards through
// the stages in the order of [Stages] and can also move back (a lapsed
// customer regresses).
type Stage string

// The five lifecycle stages, in journey order.
const (
	Awareness     Stage = "awareness"
	Consideration Stage = "consideration"
	Decision      Stage = "decision"
	Retention     Stage = "retention"
	Advocacy      Stage = "advocacy"
)

// Stages lists every stage in journey order. New contacts start in the
// first one, [Awareness]. Callers must not modify it.
var Stages = []Stage{Awareness, Consideration, Decision, Retention, Advocacy}

// ParseStage returns the stage named s. The name must be written exactly as
// the stage constants are (lower case); the error names the bad value and
// lists the valid ones.
func ParseStage(s string) (Stage, error) {
	for _, st := range Stages {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown stage %q (valid: %s)", s, stageList())
}

// Valid reports whether s is one of the five lifecycle stages.
func (s Stage) Valid() bool {
	_, err := ParseStage(string(s))
	return err == nil
}

// String returns the stage's name.
func (s Stage) String() string { return string(s) }

// stageList returns the valid stage names separated by commas, for errors.
func stageList() string {
	names := make([]string, len(Stages))
	for i, st := range Stages {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}
