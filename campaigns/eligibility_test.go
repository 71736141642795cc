package campaigns

import (
	"testing"
	"time"
)

// Each trigger's rules of enrolment.
func TestEligibility(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	for _, tc := range []struct {
		trigger  TriggerKind
		cooldown time.Duration
		want     Eligibility
	}{
		{OnEnterStage, 0, Eligibility{OncePerStay: true}},
		{OnEnterStage, day, Eligibility{Cooldown: day, OncePerStay: true}},
		{OnRule, 0, Eligibility{OnceEver: true}},
		{OnRule, day, Eligibility{Cooldown: day}},
		{OnEvent, 0, Eligibility{OncePerOccurrence: true}},
		{OnEvent, day, Eligibility{Cooldown: day, OncePerOccurrence: true}},
	} {
		if got := (Enrolment{Trigger: tc.trigger, Cooldown: tc.cooldown}).Eligibility(); got != tc.want {
			t.Errorf("%s with a cooldown of %v: %+v, want %+v", tc.trigger, tc.cooldown, got, tc.want)
		}
	}
}
