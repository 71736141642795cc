package rule

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
)

// Event is something a contact did, as a rule sees it through the event
// variable: event.name, event.properties.revenue, event.timestamp.
type Event struct {
	Name       string         `expr:"name"`
	Properties map[string]any `expr:"properties"`
	Timestamp  time.Time      `expr:"timestamp"`
	// raw holds Properties as JSON until a rule needs them (EventJSON).
	raw []byte
}

// EventJSON returns an event whose properties are the JSON object props,
// decoded only if the event is evaluated by a rule that reads it: most
// events touching a contact are never read so.
func EventJSON(name string, at time.Time, props []byte) *Event {
	return &Event{Name: name, Timestamp: at, raw: slices.Clone(props)}
}

// Decode fills Properties from the JSON EventJSON kept; a malformed object
// leaves them empty, as before. Evaluation does not decode (it runs on many
// goroutines at once): whoever runs rules that read the event decodes it
// first.
func (e *Event) Decode() {
	if e == nil || e.raw == nil {
		return
	}
	if e.Properties == nil {
		_ = json.Unmarshal(e.raw, &e.Properties)
	}
	e.raw = nil
}

// Facts is everything a rule can see about one contact at one instant.
type Facts struct {
	Now            time.Time
	Stage          Stage
	StageEnteredAt time.Time // days_in_stage is Now - StageEnteredAt, in days
	Traits         map[string]any
	Email          string
	// Event is the event being ingested, or nil in scheduled sweeps.
	Event *Event
	// Values holds the aggregates the rule needs ([Program.Aggregates],
	// or [Needs] for several rules): count, sum and distinct as numbers,
	// days_since in days (math.Inf(1) when never), ever as 1 or 0. A
	// missing key means 0, or +Inf for days_since.
	Values map[Aggregate]float64
	// Nums is the compact form a sweep loads, read when Values is nil:
	// the aggregates NumNeeds (one slice shared by a batch), in order.
	Nums     []float64
	NumNeeds []Aggregate
}

// Value returns the value of aggregate a, from Values or else Nums, with
// the default (0, or +Inf for days_since) when it is not there.
func (f *Facts) Value(a Aggregate) float64 {
	if f.Values == nil && f.Nums != nil {
		for i, n := range f.NumNeeds {
			if n == a && i < len(f.Nums) {
				return f.Nums[i]
			}
		}
		return value(nil, a)
	}
	return value(f.Values, a)
}

// ValuesMap returns the aggregates as a map, whichever form holds them.
func (f *Facts) ValuesMap() map[Aggregate]float64 {
	if f.Values != nil || f.Nums == nil {
		return f.Values
	}
	m := make(map[Aggregate]float64, len(f.NumNeeds))
	for i, a := range f.NumNeeds {
		if i < len(f.Nums) {
			m[a] = f.Nums[i]
		}
	}
	return m
}

// Observation is one value a rule read during an evaluation, recorded in
// the transition history: {`count("order_completed", "all")`, 3.0},
// {"stage", "decision"}, {"traits.plan", "pro"}.
type Observation struct {
	Expr  string
	Value any
}

// run is the reusable state of one evaluation.
type run struct {
	vm  vm.VM
	env env
}

// Eval evaluates the rule on f. It returns an error, never panics, when
// the data does not fit the rule: a trait compared with a number that holds
// text, event.name read in a sweep, when there is no event (event?.name is
// nil instead), a rule that gives nil, or a days_to_anniversary trait that
// is not a date. Errors located in the rule wrap an *Error.
//
// Eval does not modify f and is safe for concurrent use.
func (p *Program) Eval(f *Facts) (bool, error) {
	return p.eval(f, true)
}

// eval is Eval, on the rule's native form if it has one and native is set,
// else on expr's VM.
func (p *Program) eval(f *Facts, native bool) (bool, error) {
	if f == nil {
		return false, errors.New("evaluating rule: no facts")
	}
	r := p.runs.Get().(*run)
	defer p.runs.Put(r)
	e := &r.env
	e.Stage = string(f.Stage)
	if p.daysInStage {
		e.DaysInStage = daysBetween(f.StageEnteredAt, f.Now)
	}
	e.Traits = f.Traits
	e.Email = f.Email
	e.Event = f.Event
	defer func() { e.Traits, e.Event = nil, nil }() // do not keep them alive in the pool

	if f.Values == nil && f.Nums != nil {
		idx := p.indexIn(f.NumNeeds)
		for i, a := range p.Aggregates {
			v := value(nil, a)
			if j := idx[i]; j >= 0 && j < len(f.Nums) {
				v = f.Nums[j]
			}
			e.Num[i] = v
			e.Ever[i] = v != 0
		}
	} else {
		for i, a := range p.Aggregates {
			v := value(f.Values, a)
			e.Num[i] = v
			e.Ever[i] = v != 0
		}
	}
	for i, trait := range p.Anniversaries {
		d, err := daysToAnniversary(f.Traits[trait], f.Now)
		if err != nil {
			return false, fmt.Errorf("evaluating rule: days_to_anniversary(%q): %w", trait, err)
		}
		e.Ann[i] = d
	}
	if p.native != nil && native {
		return p.native(e), nil
	}

	out, err := r.vm.Run(p.program, e)
	if err != nil {
		return false, fmt.Errorf("evaluating rule: %w", fromExprError(p.Source, err))
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("evaluating rule: the rule must be true or false, but it gave %s", describeValue(out))
	}
	return b, nil
}

// EvalTrace evaluates the rule like Eval and also returns what it read, in
// order of first appearance: each activity function with its value (a
// number, or a bool for ever), each variable, and each literal path below
// traits and event with the value found there (nil when absent).
func (p *Program) EvalTrace(f *Facts) (bool, []Observation, error) {
	ok, err := p.Eval(f)
	if err != nil {
		return false, nil, err
	}
	return ok, p.Observe(f), nil
}

// Observe returns what the rule reads in f, as EvalTrace does, without
// evaluating it: a stage rule's move records what its condition saw.
func (p *Program) Observe(f *Facts) []Observation {
	out := make([]Observation, 0, len(p.observe))
	for _, o := range p.observe {
		var v any
		switch o.kind {
		case obsAggregate:
			a := p.Aggregates[o.index]
			if a.Kind == AggEver {
				v = f.Value(a) != 0
			} else {
				v = f.Value(a)
			}
		case obsAnniversary:
			d, err := daysToAnniversary(f.Traits[p.Anniversaries[o.index]], f.Now)
			if err == nil {
				v = d
			}
		case obsStage:
			v = string(f.Stage)
		case obsDaysInStage:
			v = daysBetween(f.StageEnteredAt, f.Now)
		case obsEmail:
			v = f.Email
		case obsTraits:
			v = lookup(f.Traits, o.path)
		case obsEvent:
			v = eventLookup(f.Event, o.path)
		}
		out = append(out, Observation{Expr: o.expr, Value: v})
	}
	return out
}

// needsIndex maps a program's aggregates to their places in one needs
// list.
type needsIndex struct {
	needs []Aggregate
	idx   []int // per aggregate of the program: index in needs, or -1
}

// indexIn returns, per aggregate of p, its index in needs (-1 when
// absent). A pass uses one needs slice for all its contacts, so the last
// answer is kept.
func (p *Program) indexIn(needs []Aggregate) []int {
	if c := p.lastIndex.Load(); c != nil && len(c.needs) == len(needs) && (len(needs) == 0 || &c.needs[0] == &needs[0]) {
		return c.idx
	}
	c := &needsIndex{needs: needs, idx: make([]int, len(p.Aggregates))}
	for i, a := range p.Aggregates {
		c.idx[i] = slices.Index(needs, a)
	}
	p.lastIndex.Store(c)
	return c.idx
}

// value returns the value of a in values, with the default for a missing
// key.
func value(values map[Aggregate]float64, a Aggregate) float64 {
	if v, ok := values[a]; ok {
		return v
	}
	if a.Kind == AggDaysSince {
		return math.Inf(1)
	}
	return 0
}

// lookup follows keys down nested maps; it returns nil where one is absent.
func lookup(v any, keys []string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// eventLookup follows a path below the event variable.
func eventLookup(ev *Event, keys []string) any {
	if ev == nil {
		return nil
	}
	if len(keys) == 0 {
		return *ev
	}
	switch keys[0] {
	case "name":
		return lookup(ev.Name, keys[1:])
	case "properties":
		return lookup(ev.Properties, keys[1:])
	case "timestamp":
		return lookup(ev.Timestamp, keys[1:])
	}
	return nil
}

// daysBetween returns the days from start to end, as a fraction.
func daysBetween(start, end time.Time) float64 {
	return end.Sub(start).Hours() / 24
}

// daysToAnniversary returns the whole days from now's date, in now's time
// zone, to the next anniversary of the date in trait: 0 on the day. A
// trait that is absent, nil or "" gives +Inf, so that comparisons with a
// number are false. The trait is a time.Time, a date "2006-01-02" or an
// RFC 3339 time (whose own date is used). The anniversary of February 29
// falls on February 28 in years that are not leap years.
func daysToAnniversary(trait any, now time.Time) (float64, error) {
	var t time.Time
	switch v := trait.(type) {
	case nil:
		return math.Inf(1), nil
	case time.Time:
		t = v
	case string:
		if v == "" {
			return math.Inf(1), nil
		}
		var err error
		if t, err = time.Parse(time.DateOnly, v); err != nil {
			if t, err = time.Parse(time.RFC3339, v); err != nil {
				return 0, fmt.Errorf("%q is not a date like 1990-05-17 or an RFC 3339 time", v)
			}
		}
	default:
		return 0, fmt.Errorf("%v (%T) is not a date like 1990-05-17", v, v)
	}
	if t.IsZero() {
		return math.Inf(1), nil
	}
	ty, tm, td := now.Date()
	today := time.Date(ty, tm, td, 0, 0, 0, 0, time.UTC)
	_, month, dom := t.Date()
	next := anniversary(ty, month, dom)
	if next.Before(today) {
		next = anniversary(ty+1, month, dom)
	}
	return math.Round(next.Sub(today).Hours() / 24), nil
}

// anniversary returns the date of month and day in year, at midnight UTC,
// moving February 29 to February 28 outside leap years.
func anniversary(year int, month time.Month, dom int) time.Time {
	if month == time.February && dom == 29 && !isLeap(year) {
		dom = 28
	}
	return time.Date(year, month, dom, 0, 0, 0, 0, time.UTC)
}

func isLeap(y int) bool {
	return y%4 == 0 && (y%100 != 0 || y%400 == 0)
}

// describeValue names a value a rule gave for a marketer.
func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case string:
		return fmt.Sprintf("the text %q", v)
	case int, float64:
		return fmt.Sprintf("the number %v", v)
	default:
		return fmt.Sprintf("%v (%T)", v, v)
	}
}

// Describe writes what a rule read for a person, as a reason: `count(
// "order_completed", "all") = 3, traits.plan = pro`.
func Describe(obs []Observation) string {
	parts := make([]string, len(obs))
	for i, o := range obs {
		parts[i] = o.Expr + " = " + shown(o.Value)
	}
	return strings.Join(parts, ", ")
}

// shown writes a value a rule saw for a marketer: whole numbers as such,
// fractions to two places (days_in_stage = 0.25, not 0.2500000381).
func shown(v any) string {
	f, ok := v.(float64)
	if !ok || f == math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
		return fmt.Sprintf("%v", v)
	}
	s := strconv.FormatFloat(f, 'f', 2, 64)
	if s == "0.00" || s == "-0.00" {
		return strconv.FormatFloat(f, 'g', 2, 64)
	}
	return s
}
