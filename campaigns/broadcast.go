package campaigns

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// Segment is a named condition in the rule language ("vip: spent 500 in
// a year"). Membership is what the condition says when a contact is
// evaluated; segments are broadcast audiences and filters for sequences.
type Segment struct {
	Name string
	When string
}

// Broadcast is one email to an audience at a time, once (SendAt) or on a
// schedule (Schedule): the newsletter, the seasonal sale, the launch.
type Broadcast struct {
	Name     string
	Audience Audience
	Template string
	// SendAt is an instant with a zone ("2026-12-10T09:00:00+01:00") or a
	// wall time ("2026-12-10T09:00"), sent at that hour in each contact's
	// own time zone. See ParseSendAt.
	SendAt string `json:",omitempty"`
	// Schedule is a cron spec (robfig/cron, 5 fields or a descriptor):
	// each firing is a run of its own. Without a CRON_TZ= prefix its
	// times are wall times in each contact's own zone. See ParseSchedule.
	Schedule string `json:",omitempty"`
	// Throttle caps this broadcast's emails a second (0: none): its sends'
	// due times are spread so.
	Throttle float64 `json:",omitempty"`
	Test     *ABTest `json:",omitempty"`
}

// Audience says who a broadcast goes to: the contacts in any of Stages
// (all stages when empty) and in Segment (everyone when empty), who are
// subscribed and have an address.
type Audience struct {
	Stages  []rule.Stage `json:",omitempty"`
	Segment string       `json:",omitempty"`
}

func (a Audience) String() string {
	var parts []string
	if len(a.Stages) > 0 {
		s := make([]string, len(a.Stages))
		for i, st := range a.Stages {
			s[i] = string(st)
		}
		parts = append(parts, "stages "+strings.Join(s, ", "))
	}
	if a.Segment != "" {
		parts = append(parts, "segment "+a.Segment)
	}
	if len(parts) == 0 {
		return "everyone subscribed"
	}
	return strings.Join(parts, " and ")
}

// Holds reports whether a contact in stage is in the audience, given
// whether it is in the segment (ignored without one).
func (a Audience) Holds(stage rule.Stage, inSegment bool) bool {
	if len(a.Stages) > 0 {
		found := false
		for _, s := range a.Stages {
			found = found || s == stage
		}
		if !found {
			return false
		}
	}
	return a.Segment == "" || inSegment
}

// ABTest tries up to four variants on a share of the audience, split
// evenly and reproducibly, and after a wait sends the winner to the rest.
type ABTest struct {
	Variants []Variant
	Share    float64       // of the audience, 0 < Share < 1
	PickBy   string        // PickOpens, PickClicks or PickConversions
	After    time.Duration // the wait from the test's first email to the decision
	// MinResults is how many people must have opened (clicked, converted)
	// across the variants for the figures to decide; fewer keeps the first
	// variant.
	MinResults int `json:",omitempty"`
}

// The metrics a test picks its winner by: the people who opened, clicked
// (as people, not machines) or converted — a conversion credited to the
// test's email (the journey's conversion goal; attributed by the
// scheduler's pass before it decides).
const (
	PickOpens       = "opens"
	PickClicks      = "clicks"
	PickConversions = "conversions"
)

// DefaultMinResults is ABTest.MinResults when not given.
const DefaultMinResults = 10

// MaxVariants is the most variants a test may have.
const MaxVariants = 4

// Variant is one version of a broadcast's email: another template, or the
// broadcast's template with another subject line (for every tone).
type Variant struct {
	Template string `json:",omitempty"`
	Subject  string `json:",omitempty"`
}

// Label names variant i (counted from 1) for people.
func (t *ABTest) Label(i int) string {
	v := t.Variants[i]
	if v.Subject != "" {
		return fmt.Sprintf("variant %d (subject %q)", i+1, v.Subject)
	}
	return fmt.Sprintf("variant %d (template %s)", i+1, v.Template)
}

// TemplateOf is the template variant i sends.
func (b *Broadcast) TemplateOf(i int) string {
	if b.Test == nil || i < 0 || i >= len(b.Test.Variants) || b.Test.Variants[i].Template == "" {
		return b.Template
	}
	return b.Test.Variants[i].Template
}

// SubjectOf is the subject line variant i sets ("": the template's own).
func (b *Broadcast) SubjectOf(i int) string {
	if b.Test == nil || i < 0 || i >= len(b.Test.Variants) {
		return ""
	}
	return b.Test.Variants[i].Subject
}

// When says when b runs, for people.
func (b *Broadcast) When() string {
	switch {
	case b.SendAt != "":
		if _, local, err := ParseSendAt(b.SendAt); err == nil && local {
			return b.SendAt + " in each contact's time zone"
		}
		return b.SendAt
	case b.Schedule != "":
		if _, local, err := ParseSchedule(b.Schedule); err == nil && local {
			return "on the schedule " + b.Schedule + ", in each contact's time zone"
		}
		return "on the schedule " + b.Schedule
	}
	return "no time yet (a draft)"
}

// wallLayouts are the ways of writing a wall time (no zone).
var wallLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02 15:04:05"}

// ParseSendAt reads a broadcast's send_at: an RFC 3339 instant with its
// zone ("2026-12-10T09:00:00+01:00", "…Z"), or a wall time without one
// ("2026-12-10T09:00"), returned as if in UTC with local set: it is sent at
// that hour in each contact's own time zone.
func ParseSendAt(s string) (at time.Time, local bool, err error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, false, nil
	}
	for _, l := range wallLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, true, nil
		}
	}
	return time.Time{}, false, fmt.Errorf("%q is not a time: give an instant with its zone (2026-12-10T09:00:00+01:00) or a wall time sent in each contact's own zone (2026-12-10T09:00)", s)
}

// ParseSchedule reads a broadcast's schedule: a 5-field cron spec or a
// descriptor (@daily, @weekly...). Without a CRON_TZ= (or TZ=) prefix its
// times are wall times in each contact's own zone (local).
func ParseSchedule(spec string) (s cron.Schedule, local bool, err error) {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "@every") {
		return nil, false, fmt.Errorf("schedule %q: @every is not a calendar time; give a cron spec like \"0 9 * * 1\" (09:00 on Mondays)", spec)
	}
	local = !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=")
	p := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	s, err = p.Parse(spec)
	if err != nil {
		return nil, false, fmt.Errorf("schedule %q: %v", spec, err)
	}
	return s, local, nil
}

// EarliestOffset is the zone furthest ahead of UTC (Kiribati, UTC+14): a
// wall time comes there first, so a run sent at a wall time in each
// contact's zone starts (its audience is taken) this long before the wall
// time read as UTC.
const EarliestOffset = 14 * time.Hour

// RunStart is when a run at scheduledFor starts: the instant itself, or,
// for a wall time (local), the moment it is that time in the zone furthest
// ahead.
func RunStart(scheduledFor time.Time, local bool) time.Time {
	if local {
		return scheduledFor.Add(-EarliestOffset)
	}
	return scheduledFor
}

// ErrNoRun says a broadcast has no run to start now.
var ErrNoRun = errors.New("no run due")

// NextRun returns the run of b to start at now, if any: for send_at, its
// one run once its start has come (and none once a run exists: last is
// not zero); for a schedule, the latest firing whose start has come and
// that is after both the last run (last) and the moment the broadcast was
// scheduled (since) — firings missed while Waymark was down, but one, are
// skipped (skipped says how many).
func (b *Broadcast) NextRun(now, since, last time.Time) (at time.Time, local bool, skipped int, err error) {
	switch {
	case b.SendAt != "":
		at, local, err := ParseSendAt(b.SendAt)
		if err != nil {
			return time.Time{}, false, 0, err
		}
		if !last.IsZero() || RunStart(at, local).After(now) {
			return time.Time{}, false, 0, ErrNoRun
		}
		return at, local, 0, nil
	case b.Schedule != "":
		s, local, err := ParseSchedule(b.Schedule)
		if err != nil {
			return time.Time{}, false, 0, err
		}
		// Firings are wall times read as UTC when local; they must start
		// after the broadcast was scheduled.
		from := since
		if local {
			from = since.UTC().Add(EarliestOffset)
		}
		if last.After(from) {
			from = last
		}
		var found time.Time
		n := 0
		for t := s.Next(from); !t.IsZero() && !RunStart(t, local).After(now); t = s.Next(t) {
			found = t
			n++
			if n > 1_000_000 {
				break // a minutely schedule missed for two years
			}
		}
		if found.IsZero() {
			return time.Time{}, false, 0, ErrNoRun
		}
		return found.UTC(), local, n - 1, nil
	}
	return time.Time{}, false, 0, ErrNoRun
}

// DueIn is when a contact in zone loc gets a run at scheduledFor: the
// instant, or, for a wall time, that wall time in loc. A wall time that a
// daylight-saving change skips (02:30 when clocks go from 02:00 to 03:00)
// is sent as late as the change is long (03:30); one that comes twice,
// once.
func DueIn(scheduledFor time.Time, local bool, loc *time.Location) time.Time {
	if !local {
		return scheduledFor
	}
	w := scheduledFor.UTC()
	t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, loc)
	got := t.In(loc)
	if read := time.Date(got.Year(), got.Month(), got.Day(), got.Hour(), got.Minute(), got.Second(), 0, time.UTC); read.Before(w) {
		t = t.Add(w.Sub(read)) // in a gap: the clock read earlier
	}
	return t.UTC()
}

// unit reads a hash of key and a contact as a number in [0, 1): the same
// for the same pair, uniform across contacts.
func unit(key string, contactID int64) float64 {
	h := hashKey(key, contactID)
	return float64(h>>11) / float64(uint64(1)<<53)
}

// Split places a contact of a broadcast's audience, reproducibly (a hash
// of key and the contact, as Drawn does for offers): in the test share, the
// variant it gets (0 … variants-1, evenly), or -1 for the rest of the
// audience. Without a test (variants < 2 or share >= 1) everyone gets
// variant 0.
func Split(key string, contactID int64, share float64, variants int) int {
	if variants < 2 || share >= 1 {
		return 0
	}
	u := unit(key, contactID)
	if u >= share {
		return -1
	}
	return min(int(u/share*float64(variants)), variants-1)
}

// SplitKey is the key a run's contacts are split by: the broadcast, and
// for a schedule the run's time too, so each run tests on another share.
func SplitKey(b *Broadcast, scheduledFor time.Time) string {
	if b.Schedule == "" {
		return b.Name
	}
	return b.Name + "@" + scheduledFor.UTC().Format(time.RFC3339)
}

// Spread returns the due time of the k-th email (from 0) of a run due at
// planned under a throttle of rate emails a second (0: none).
func Spread(planned time.Time, k int, rate float64) time.Time {
	if rate <= 0 || k <= 0 {
		return planned
	}
	return planned.Add(time.Duration(float64(k) / rate * float64(time.Second)))
}

// VariantResult is one variant's figures at a test's decision.
type VariantResult struct {
	Variant  int // from 0
	Label    string
	Template string
	Subject  string `json:",omitempty"`
	// Sent is how many of its emails went out; People how many of their
	// recipients opened (clicked) them, people only, not machines, by the
	// decision.
	Sent   int
	People int
	Rate   float64 // People / Sent
}

// Decision is the outcome of a broadcast's A/B test, as recorded and
// shown: the figures, the rule, the winner and why.
type Decision struct {
	PickBy   string
	Rule     string
	Variants []VariantResult
	Winner   int // from 0
	Reason   string
	// Kept says the first variant was kept by default (a tie, or too few
	// results), not chosen by the figures.
	Kept bool
	At   time.Time
}

// Decide picks a test's winner from its variants' figures: the highest
// share of recipients who opened (clicked); a tie for the highest, or
// fewer than MinResults people across the variants, keeps the first
// variant and says so.
func Decide(t *ABTest, results []VariantResult, at time.Time) Decision {
	minResults := t.MinResults
	if minResults <= 0 {
		minResults = DefaultMinResults
	}
	verb := map[string]string{PickOpens: "opened", PickClicks: "clicked", PickConversions: "converted"}[t.PickBy]
	what := map[string]string{PickOpens: "opened it (people, not machines", PickClicks: "clicked it (people, not machines",
		PickConversions: "converted (a conversion credited to its email: the one they last opened or clicked as a person before it"}[t.PickBy]
	d := Decision{PickBy: t.PickBy, At: at, Variants: results,
		Rule: fmt.Sprintf("the variant whose recipients most often %s; the share of its emails sent) wins; a tie for the highest share, or fewer than %d people who %s across the variants, keeps variant 1", what, minResults, verb)}
	if verb == "" {
		d.Rule = fmt.Sprintf("pick_by %s is not available: Waymark does not track it", t.PickBy)
		d.Kept, d.Reason = true, fmt.Sprintf("%s are not tracked by Waymark: variant 1 kept", t.PickBy)
		return d
	}
	total := 0
	for i := range d.Variants {
		r := &d.Variants[i]
		total += r.People
		if r.Sent > 0 {
			r.Rate = float64(r.People) / float64(r.Sent)
		}
	}
	if total < minResults {
		d.Kept = true
		d.Reason = fmt.Sprintf("too few results: %d %s across the variants, fewer than %d: variant 1 kept", total, plural(total, "person", "people")+" "+verb, minResults)
		return d
	}
	// The highest rate, compared exactly (a/b > c/d as a·d > c·b).
	best, tie := 0, false
	better := func(i, j int) int { // sign of rate i - rate j
		a, b := d.Variants[i].People*max(d.Variants[j].Sent, 1), d.Variants[j].People*max(d.Variants[i].Sent, 1)
		if d.Variants[i].Sent == 0 {
			a = 0
		}
		if d.Variants[j].Sent == 0 {
			b = 0
		}
		switch {
		case a > b:
			return 1
		case a < b:
			return -1
		}
		return 0
	}
	for i := 1; i < len(d.Variants); i++ {
		switch better(i, best) {
		case 1:
			best, tie = i, false
		case 0:
			tie = true
		}
	}
	if tie {
		d.Kept = true
		d.Reason = fmt.Sprintf("a tie: the highest share who %s (%s) is shared by more than one variant: variant 1 kept", verb, percent(d.Variants[best].Rate))
		return d
	}
	d.Winner = best
	second := -1.0
	for i, r := range d.Variants {
		if i != best && r.Rate > second {
			second = r.Rate
		}
	}
	d.Reason = fmt.Sprintf("%s won: %s of its recipients %s, against at most %s for the others", d.Variants[best].Label, percent(d.Variants[best].Rate), verb, percent(math.Max(second, 0)))
	return d
}

func percent(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// WithSubject is t with its subject line replaced, in the base and in
// every tone that has its own: a variant of a test that tries another
// subject.
func WithSubject(t templates.Template, subject string) templates.Template {
	out := templates.Template{Name: t.Name, Base: t.Base, Tones: make(map[string]templates.Content, len(t.Tones))}
	out.Base.Subject = subject
	for tone, c := range t.Tones {
		if c.Subject != "" {
			c.Subject = subject
		}
		out.Tones[tone] = c
	}
	return out
}
