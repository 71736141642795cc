// Package report is what marketing earned: conversions credited to the
// emails people opened or clicked, and the figures per template, step,
// sequence, broadcast, variant, tone, stage and offer (issue 21). It holds
// the domain — the conversion goal, the dimensions, the figures and their
// rates, the comparison of two groups with a 95% confidence interval.
// internal/store attributes conversions and keeps the rollups reports are
// read from; the CLI (`waymark report`), the API (/api/v1/reports) and the
// dashboard show them.
package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/waymark/waymark/rule"
)

// Goal is the conversion goal (`conversion:` in the journey file): the
// event that means marketing worked, the property summed as revenue, and
// how long after a person's open or click an email gets the credit.
type Goal struct {
	Event  string        `json:"event"`
	Value  string        `json:"value,omitempty"` // "" : conversions carry no revenue
	Window time.Duration `json:"window"`
}

// DefaultGoal is the goal of a journey without `conversion:`.
func DefaultGoal() Goal {
	return Goal{Event: "order_completed", Value: "revenue", Window: 5 * 24 * time.Hour}
}

// How a conversion was credited (Conversion.Touch).
const (
	TouchClicked = "clicked"
	TouchOpened  = "opened"
)

// Conversion is one goal event and the email it was credited to: the
// email the contact last opened or clicked as a person (not a machine)
// within the goal's window before it. SendID is 0 when no email was
// opened or clicked in the window (the conversion still counts for the
// contact, its stage and the revenue per day, but for no email).
type Conversion struct {
	ContactID  int64     `json:"contact_id" db:"contact_id"`
	MessageID  string    `json:"message_id" db:"message_id"` // the goal event's
	Event      string    `json:"event" db:"event"`
	At         time.Time `json:"at" db:"occurred_at"`
	Value      float64   `json:"value" db:"value"`
	Stage      string    `json:"stage" db:"stage"` // the contact's stage when it happened
	SendID     int64     `json:"send_id,omitempty" db:"send_id"`
	Touch      string    `json:"touch,omitempty" db:"touch"` // TouchClicked or TouchOpened
	TouchAt    time.Time `json:"touch_at,omitzero" db:"touch_at"`
	Reason     string    `json:"reason" db:"reason"` // why it was credited so, in words
	Template   string    `json:"template,omitempty" db:"template"`
	Sequence   string    `json:"sequence,omitempty" db:"sequence"`
	Broadcast  string    `json:"broadcast,omitempty" db:"broadcast"`
	Attributed time.Time `json:"attributed_at" db:"attributed_at"`
}

// Dimension is what a report's rows are grouped by.
type Dimension string

// The dimensions, in the order the CLI and the dashboard offer them.
const (
	ByTemplate  Dimension = "template"
	ByStep      Dimension = "step"      // a sequence's step (sequence and step)
	BySequence  Dimension = "sequence"  // offers' emails under "offer: NAME"
	ByBroadcast Dimension = "broadcast" // sequences' emails are not in it
	ByVariant   Dimension = "variant"   // a broadcast's variant (broadcast and variant)
	ByTone      Dimension = "tone"
	ByStage     Dimension = "stage" // the contact's stage when the email was sent
	ByOffer     Dimension = "offer" // emails that carried an offer
)

// Dimensions lists every dimension.
var Dimensions = []Dimension{ByTemplate, ByStep, BySequence, ByBroadcast, ByVariant, ByTone, ByStage, ByOffer}

// ParseDimension reads a dimension's name, with an error that lists them.
func ParseDimension(s string) (Dimension, error) {
	d := Dimension(strings.TrimSpace(strings.ToLower(s)))
	if slices.Contains(Dimensions, d) {
		return d, nil
	}
	names := make([]string, len(Dimensions))
	for i, x := range Dimensions {
		names[i] = string(x)
	}
	return "", fmt.Errorf("unknown report dimension %q: use one of %s", s, strings.Join(names, ", "))
}

// Period is a range of days [From, To) in UTC. Emails count in the
// period they were sent in, with everything that came of them (opens,
// clicks, bounces, conversions) whenever it came; conversions and revenue
// per day count on the day of the goal event.
type Period struct{ From, To time.Time }

// Figures are what some emails did. Opened and Clicked count emails
// opened (clicked) at least once by a person; Conversions and Revenue the
// conversions credited to them, Converted the emails credited with at
// least one (the conversion rate is Converted over Sent).
type Figures struct {
	Sent         int64   `json:"sent" db:"sent"` // accepted by the relay
	Delivered    int64   `json:"delivered" db:"delivered"`
	HardBounced  int64   `json:"hard_bounced" db:"hard_bounced"`
	SoftBounced  int64   `json:"soft_bounced" db:"soft_bounced"`
	Complained   int64   `json:"complained" db:"complained"`
	Opened       int64   `json:"opened" db:"opened"`
	Clicked      int64   `json:"clicked" db:"clicked"`
	Unsubscribed int64   `json:"unsubscribed" db:"unsubscribed"`
	Converted    int64   `json:"converted" db:"converted"` // emails credited with at least one conversion
	Conversions  int64   `json:"conversions" db:"conversions"`
	Revenue      float64 `json:"revenue" db:"revenue"`
}

// Add adds o's figures to f's.
func (f *Figures) Add(o Figures) {
	f.Sent += o.Sent
	f.Delivered += o.Delivered
	f.HardBounced += o.HardBounced
	f.SoftBounced += o.SoftBounced
	f.Complained += o.Complained
	f.Opened += o.Opened
	f.Clicked += o.Clicked
	f.Unsubscribed += o.Unsubscribed
	f.Converted += o.Converted
	f.Conversions += o.Conversions
	f.Revenue += o.Revenue
}

// Rates are Figures' shares of the emails sent (nil when none was).
type Rates struct {
	Open              *float64 `json:"open_rate"`
	Click             *float64 `json:"click_rate"`
	Unsubscribe       *float64 `json:"unsubscribe_rate"`
	Bounce            *float64 `json:"bounce_rate"` // hard and soft
	Complaint         *float64 `json:"complaint_rate"`
	Conversion        *float64 `json:"conversion_rate"`
	RevenuePerEmail   *float64 `json:"revenue_per_recipient"`
	DeliveredReported *float64 `json:"delivered_rate"` // of the emails sent, those the relay reported delivered
}

// Rates computes f's rates.
func (f Figures) Rates() Rates {
	share := func(n int64) *float64 {
		if f.Sent == 0 {
			return nil
		}
		v := float64(n) / float64(f.Sent)
		return &v
	}
	r := Rates{
		Open: share(f.Opened), Click: share(f.Clicked), Unsubscribe: share(f.Unsubscribed),
		Bounce: share(f.HardBounced + f.SoftBounced), Complaint: share(f.Complained),
		Conversion: share(f.Converted), DeliveredReported: share(f.Delivered),
	}
	if f.Sent > 0 {
		v := f.Revenue / float64(f.Sent)
		r.RevenuePerEmail = &v
	}
	return r
}

// Row is one line of a report: the value of its dimension (Key; for step
// and variant, Key is "sequence/step" or "broadcast/variant" and Label
// says it in words) and its figures.
type Row struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	Figures
	Rates Rates `json:"rates"`
}

// Table is a report: its rows (by Dimension, over Period) and their total.
type Table struct {
	By          Dimension `json:"by"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Rows        []Row     `json:"rows"`
	Total       Row       `json:"total"`
	RefreshedAt time.Time `json:"refreshed_at"` // how fresh the rollups were
}

// Group is a number of contacts (or emails) and what they did: how many
// converted, their revenue, and the sum of squares of each one's revenue
// (for the revenue's confidence interval).
type Group struct {
	Name      string  `json:"name"`
	N         int64   `json:"n"`
	Converted int64   `json:"converted"`
	Revenue   float64 `json:"revenue"`
	RevenueSq float64 `json:"-"`
}

// Rate is the group's conversion rate (nil when empty).
func (g Group) Rate() *float64 {
	if g.N == 0 {
		return nil
	}
	v := float64(g.Converted) / float64(g.N)
	return &v
}

// PerContact is the group's revenue per contact (nil when empty).
func (g Group) PerContact() *float64 {
	if g.N == 0 {
		return nil
	}
	v := g.Revenue / float64(g.N)
	return &v
}

// Interval is a difference with its 95% confidence interval.
type Interval struct {
	Diff float64 `json:"diff"`
	Low  float64 `json:"low"`
	High float64 `json:"high"`
}

// Significant says whether the interval leaves out zero.
func (i Interval) Significant() bool { return i.Low > 0 || i.High < 0 }

// z95 is the normal distribution's 97.5th percentile.
const z95 = 1.959963984540054

// Comparison is a treatment group against a control group (an offer's
// drawn contacts against the eligible ones not drawn; an A/B test's
// winner against the runner-up): the difference of their conversion
// rates and of their revenue per contact, each with a 95% confidence
// interval (normal approximation: Wald for the rates, Welch for the
// revenue). Nil intervals mean there is nothing to say: a group under 2,
// or no variation in either group (nobody converted, or everyone did, in
// both: the approximation would give an interval of width 0).
type Comparison struct {
	Treatment Group     `json:"treatment"`
	Control   Group     `json:"control"`
	Rate      *Interval `json:"conversion_rate_diff"`
	Revenue   *Interval `json:"revenue_per_contact_diff"`
}

// NothingToCompare says why a comparison has no interval.
const NothingToCompare = "nothing to compare: a group has under 2 contacts, or neither varies (nobody converted, or everyone did)"

// Compare compares treatment with control.
func Compare(treatment, control Group) Comparison {
	c := Comparison{Treatment: treatment, Control: control}
	if treatment.N < 2 || control.N < 2 {
		return c
	}
	n1, n2 := float64(treatment.N), float64(control.N)
	p1, p2 := float64(treatment.Converted)/n1, float64(control.Converted)/n2
	if se := math.Sqrt(p1*(1-p1)/n1 + p2*(1-p2)/n2); se > 0 {
		c.Rate = &Interval{Diff: p1 - p2, Low: p1 - p2 - z95*se, High: p1 - p2 + z95*se}
	}
	m1, m2 := treatment.Revenue/n1, control.Revenue/n2
	// Sample variances from the sums and sums of squares.
	v1 := math.Max(0, (treatment.RevenueSq-n1*m1*m1)/(n1-1))
	v2 := math.Max(0, (control.RevenueSq-n2*m2*m2)/(n2-1))
	if se := math.Sqrt(v1/n1 + v2/n2); se > 0 {
		c.Revenue = &Interval{Diff: m1 - m2, Low: m1 - m2 - z95*se, High: m1 - m2 + z95*se}
	}
	return c
}

// Holdout is an offer's drawn contacts against its holdout (eligible, not
// drawn), over the draws in a period: who converted within HoldoutHorizon
// of their draw, and their revenue then.
type Holdout struct {
	Offer string `json:"offer"`
	Comparison
}

// HoldoutHorizon is how long after a draw a conversion counts for it.
const HoldoutHorizon = 30 * 24 * time.Hour

// Variant is one variant of a broadcast run's A/B test: the test emails
// sent, the people who opened, clicked, converted, and the revenue.
type Variant struct {
	Index     int     `json:"variant" db:"variant"` // from 0; shown from 1 (Label)
	Label     string  `json:"label" db:"label"`     // the template or subject line
	Sent      int64   `json:"sent" db:"sent"`
	Opened    int64   `json:"opened" db:"opened"`
	Clicked   int64   `json:"clicked" db:"clicked"`
	Converted int64   `json:"conversions" db:"converted"`
	Revenue   float64 `json:"revenue" db:"revenue"`
	RevenueSq float64 `json:"-" db:"revenue_sq"`
}

// ABTest is a broadcast run's test: its variants, the decision if one was
// made, and the winner against the runner-up on the metric it was picked
// by (the winner's margin, with its 95% confidence interval).
type ABTest struct {
	Broadcast string      `json:"broadcast"`
	Run       int64       `json:"run"`
	PickBy    string      `json:"pick_by"`
	Variants  []Variant   `json:"variants"`
	Decided   bool        `json:"decided"`
	Winner    int         `json:"winner"`
	Reason    string      `json:"reason,omitempty"`
	Margin    *Comparison `json:"margin,omitempty"` // winner (treatment) against the runner-up (control), on PickBy
}

// Stage is a stage's economics over a period.
type Stage struct {
	Stage       string  `json:"stage"`
	Contacts    int64   `json:"contacts"` // in the stage now
	Entered     int64   `json:"entered"`  // entries in the period
	Conversions int64   `json:"conversions"`
	Revenue     float64 `json:"revenue"` // from conversions made while in the stage, in the period
	// MedianToNext is the median stay of the contacts who moved on to a
	// later stage in the period (nil: none did).
	MedianToNext *time.Duration `json:"median_to_next"`
	MovedOn      int64          `json:"moved_on"`  // moves out to a later stage
	Regressed    int64          `json:"regressed"` // moves out to an earlier stage
	// RegressedShare is Regressed over all moves out (nil: none).
	RegressedShare *float64 `json:"regressed_share"`
}

// Day is one day's conversions and revenue: all of them, and those
// credited to an email.
type Day struct {
	Day               time.Time `json:"day" db:"day"`
	Conversions       int64     `json:"conversions" db:"conversions"`
	Revenue           float64   `json:"revenue" db:"revenue"`
	Attributed        int64     `json:"attributed" db:"attributed"`
	AttributedRevenue float64   `json:"attributed_revenue" db:"attributed_revenue"`
}

// Line is a report's line as the rollups sum it: the value of its
// dimension (Name: for step the sequence, for variant the broadcast),
// the step or variant from 0 (Index; 0 for the other dimensions) and
// the figures.
type Line struct {
	Name  string `db:"name"`
	Index int    `db:"idx"`
	Figures
}

// NewTable makes the report of lines (grouped by by, over p): each
// line's key, label and rates, sorted by key (steps and variants in
// order; stages in journey order), and the total.
func NewTable(by Dimension, p Period, lines []Line, refreshedAt time.Time) Table {
	// Stages in journey order (any other after them), the rest by name.
	rank := func(name string) int {
		if by != ByStage {
			return 0
		}
		if i := slices.Index(rule.Stages, rule.Stage(name)); i >= 0 {
			return i
		}
		return len(rule.Stages)
	}
	slices.SortFunc(lines, func(a, b Line) int {
		if c := rank(a.Name) - rank(b.Name); c != 0 {
			return c
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return a.Index - b.Index
	})
	t := Table{By: by, From: p.From, To: p.To, Rows: make([]Row, 0, len(lines)), RefreshedAt: refreshedAt,
		Total: Row{Key: "total", Label: "Total"}}
	for _, l := range lines {
		key, label := l.Name, l.Name
		switch by {
		case ByStep:
			key, label = fmt.Sprintf("%s/%d", l.Name, l.Index+1), fmt.Sprintf("%s, step %d", l.Name, l.Index+1)
		case ByVariant:
			key, label = fmt.Sprintf("%s/%d", l.Name, l.Index+1), fmt.Sprintf("%s, variant %d", l.Name, l.Index+1)
		case ByTone:
			if l.Name == "" {
				label = "(no tone)"
			}
		}
		t.Rows = append(t.Rows, Row{Key: key, Label: label, Figures: l.Figures, Rates: l.Figures.Rates()})
		t.Total.Figures.Add(l.Figures)
	}
	t.Total.Rates = t.Total.Figures.Rates()
	return t
}

// SetShare sets the stage's RegressedShare from its moves out.
func (s *Stage) SetShare() {
	s.RegressedShare = nil
	if n := s.MovedOn + s.Regressed; n > 0 {
		v := float64(s.Regressed) / float64(n)
		s.RegressedShare = &v
	}
}

// picked is how many of variant v's test emails did what the test picks
// by (were opened, clicked, converted).
func (t ABTest) picked(v Variant) int64 {
	switch t.PickBy {
	case "clicks":
		return v.Clicked
	case "conversions":
		return v.Converted
	}
	return v.Opened
}

// Rate is variant v's share of its test emails that did what the test
// picks by (nil: none sent).
func (t ABTest) Rate(v Variant) *float64 {
	if v.Sent == 0 {
		return nil
	}
	r := float64(t.picked(v)) / float64(v.Sent)
	return &r
}

// SetMargin sets the winner's margin over the runner-up (the other
// variant with the highest rate on PickBy): the winner's group against
// the runner-up's. Nothing when undecided or with one variant.
func (t *ABTest) SetMargin() {
	t.Margin = nil
	if !t.Decided || t.Winner < 0 || t.Winner >= len(t.Variants) || len(t.Variants) < 2 {
		return
	}
	group := func(v Variant) Group {
		return Group{Name: v.Label, N: v.Sent, Converted: t.picked(v), Revenue: v.Revenue, RevenueSq: v.RevenueSq}
	}
	runner := -1
	for i, v := range t.Variants {
		if i == t.Winner {
			continue
		}
		// The higher rate, compared exactly: a/b > c/d as a·d > c·b.
		if r := t.Variants[max(runner, 0)]; runner < 0 || t.picked(v)*max(r.Sent, 1) > t.picked(r)*max(v.Sent, 1) {
			runner = i
		}
	}
	c := Compare(group(t.Variants[t.Winner]), group(t.Variants[runner]))
	t.Margin = &c
}
