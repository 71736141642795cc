package campaigns

import "time"

// Eligibility is what keeps a candidate out of a sequence: the rules of
// enrolment for its trigger, read against the contact's earlier
// enrolments in the sequence. The store applies them to every candidate
// of a batch at once, probing each candidate's enrolments by key
// (Store.Enrol enrols by them; PreviewStore.Enrollable counts by them).
//
// Whatever the trigger, a contact is enrolled only while subscribed (and
// not merged into another contact), never while it is in the sequence (an
// active enrolment), and not again within the sequence's cooldown.
type Eligibility struct {
	// Cooldown: an enrolment that started after the candidate's start
	// less the cooldown keeps it out.
	Cooldown time.Duration
	// OncePerStay (enter_stage triggers): once per stay in the stage. An
	// enrolment that started at or after the contact entered the stage
	// (Enrolment.StageSince) keeps it out.
	OncePerStay bool
	// OnceEver ('when' triggers without a cooldown): any enrolment, ever,
	// keeps it out.
	OnceEver bool
	// OncePerOccurrence (event triggers, which start at the event's time):
	// an enrolment that was running when the event occurred, or started
	// since (one not ended, or ended at or after the candidate's start),
	// keeps it out. Each occurrence starts the sequence once, and not
	// while it runs: the same whether the reactor saw the event at once or
	// a sweep finds it later.
	OncePerOccurrence bool
}

// Eligibility returns the rules that decide whether the candidate e may be
// enrolled (by its Trigger and Cooldown).
func (e Enrolment) Eligibility() Eligibility {
	return Eligibility{
		Cooldown:          e.Cooldown,
		OncePerStay:       e.Trigger == OnEnterStage,
		OnceEver:          e.Trigger == OnRule && e.Cooldown == 0,
		OncePerOccurrence: e.Trigger == OnEvent,
	}
}
