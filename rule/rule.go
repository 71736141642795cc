// Package rule is the language marketers write conditions in: the stage
// rules, sequence triggers, steps, exits and goals, holds, offers and tone
// rules. A rule is compiled once — parsed (parse.go), checked against the
// language (check.go) and compiled (compile.go; native.go for the common
// subset) — and run many times, on what is known about one contact at one
// instant (run.go). It is pure: it reads no database, and the activity facts
// a rule needs ([Program.Aggregates]) are fetched by the caller.
//
// Rules are github.com/expr-lang/expr expressions checked against a typed
// environment. The variables are stage (string), days_in_stage (number),
// traits (map), email (string) and event (the event being ingested, or nil
// in scheduled sweeps). Reading a field of a nil event, as in event.name
// during a sweep, is a run-time error; write event?.name (nil when there is
// no event) or event != nil && event.name == "...".
//
// The activity functions are count(name, window), sum(name, property,
// window), distinct(name, property, window), days_since(name), ever(name)
// and days_to_anniversary(trait). Their arguments must be literal strings,
// so every fact a rule depends on is known when it is saved. A small set of
// bounded builtins is available; ranges, closures, let and anything that
// can loop or allocate without bound are refused when a rule is compiled.
package rule

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/vm"
)

// Limits on what a rule may be. They bound the work one evaluation can do,
// which matters when a sweep evaluates every rule for a million contacts.
const (
	// MaxSourceLen is the longest rule accepted, in characters.
	MaxSourceLen = 4000
	// MaxNodes is the most syntax nodes (names, literals, operators,
	// calls...) a rule may have.
	MaxNodes = 300
	// MaxPatternSize is the most steps (compiled instructions, roughly) a
	// pattern of matches may have. Matching costs up to this many steps
	// per character of the text (Go's regexp simulates every state at
	// once), and the text can be a contact's 32 KB trait: at 300, such a
	// match stays under a fifth of a second; patterns people write take
	// a few dozen.
	MaxPatternSize = 300
	// MaxJoins is the most + a rule may have whose operands may be
	// strings.
	MaxJoins = 16
	// memoryBudget bounds what a rule may allocate in expr's VM (array and
	// map literals) in one evaluation.
	memoryBudget = 10000
)

// AggKind is the kind of an activity function.
type AggKind uint8

// The activity functions. Their values in [Facts.Values] are numbers:
// counts and sums as such, days_since in days (math.Inf(1) when the event
// never happened), ever as 1 or 0.
const (
	AggCount     AggKind = iota + 1 // count(name, window)
	AggSum                          // sum(name, property, window)
	AggDistinct                     // distinct(name, property, window)
	AggDaysSince                    // days_since(name)
	AggEver                         // ever(name)
)

// String returns the function's name as written in rules.
func (k AggKind) String() string {
	switch k {
	case AggCount:
		return "count"
	case AggSum:
		return "sum"
	case AggDistinct:
		return "distinct"
	case AggDaysSince:
		return "days_since"
	case AggEver:
		return "ever"
	default:
		return "AggKind(" + strconv.Itoa(int(k)) + ")"
	}
}

// Aggregate is one activity fact a rule needs, such as the number of
// order_completed events in the last 365 days. Property is set for sum and
// distinct only and Window for count, sum and distinct only. Aggregate is
// comparable, so it can key [Facts.Values].
type Aggregate struct {
	Kind     AggKind
	Event    string
	Property string
	Window   Window
}

// String returns the call as a marketer would write it, in canonical form:
// count("order_completed", "365d"), sum("order_completed", "revenue",
// "all"), days_since("order_completed").
func (a Aggregate) String() string {
	var b strings.Builder
	b.WriteString(a.Kind.String())
	b.WriteByte('(')
	b.WriteString(strconv.Quote(a.Event))
	if a.Kind == AggSum || a.Kind == AggDistinct {
		b.WriteString(", ")
		b.WriteString(strconv.Quote(a.Property))
	}
	if a.Kind == AggCount || a.Kind == AggSum || a.Kind == AggDistinct {
		b.WriteString(", ")
		b.WriteString(strconv.Quote(a.Window.String()))
	}
	b.WriteByte(')')
	return b.String()
}

// CompileOptions says where a rule is used.
type CompileOptions struct {
	// AllowEnrolment allows the "enrolment" window, which only makes sense
	// in a sequence's step conditions, exit and goal.
	AllowEnrolment bool
}

// Error is a mistake in a rule, found when it is compiled or, for data
// that does not fit the rule (a trait of the wrong type), when it runs.
// Line and Column are 1-based and count characters, not bytes.
type Error struct {
	Line, Column int
	Msg          string
}

// Error returns "line L, column C: msg".
func (e *Error) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// Program is a compiled rule. It is safe for concurrent use.
type Program struct {
	// Source is the rule as written.
	Source string
	// Aggregates are the activity facts the rule reads, each once, in the
	// order they first appear in Source.
	Aggregates []Aggregate
	// Anniversaries are the traits read by days_to_anniversary, each once,
	// in order of appearance.
	Anniversaries []string

	program *vm.Program
	// traits: the rule reads the traits variable.
	traits bool
	// lastIndex caches where its aggregates are in a pass's needs.
	lastIndex atomic.Pointer[needsIndex]
	// observe lists what EvalTrace reports, in order of appearance.
	observe []observable
	// runs recycles the VM and environment of an evaluation.
	runs sync.Pool
	// native is the rule as Go closures, when it fits (native.go); nil
	// otherwise.
	native boolFn
	// daysInStage: the rule reads days_in_stage.
	daysInStage bool
	// event: the rule reads the event variable.
	event bool
	// directions says, by aggregate, how new events of its name can move
	// the result (canRaise, canLower).
	directions []uint8
}

// observableKind says where an observed value comes from.
type observableKind uint8

const (
	obsAggregate observableKind = iota
	obsAnniversary
	obsStage
	obsDaysInStage
	obsEmail
	obsTraits
	obsEvent
)

// observable is one value a rule reads, reported by EvalTrace.
type observable struct {
	expr  string
	kind  observableKind
	index int      // into Aggregates or Anniversaries
	path  []string // keys below traits or event
}

// env is the typed environment rules are checked against and run on. The
// $-prefixed fields cannot be named in a rule (checking refuses any
// variable but the five documented ones); activity calls are rewritten to
// index them.
type env struct {
	Stage       string         `expr:"stage"`
	DaysInStage float64        `expr:"days_in_stage"`
	Traits      map[string]any `expr:"traits"`
	Email       string         `expr:"email"`
	Event       *Event         `expr:"event"`
	Num         []float64      `expr:"$num"`
	Ever        []bool         `expr:"$ever"`
	Ann         []float64      `expr:"$ann"`
}

// Names of the rewritten lookups, matching env's tags.
const (
	numSlot  = "$num"
	everSlot = "$ever"
	annSlot  = "$ann"
)

// variables are the names a rule may use, in documentation order.
var variables = []string{"stage", "days_in_stage", "traits", "email", "event"}

// eventFields are the fields of event, as tagged on [Event].
var eventFields = []string{"name", "properties", "timestamp"}

// activityFuncs are the functions a rule may call, besides safeBuiltins.
var activityFuncs = []string{"count", "sum", "distinct", "days_since", "ever", "days_to_anniversary"}

// safeBuiltins are expr's builtins whose cost is bounded by their input.
var safeBuiltins = []string{
	"len", "abs", "ceil", "floor", "round", "int", "float", "string",
	"trim", "trimPrefix", "trimSuffix", "upper", "lower",
	"hasPrefix", "hasSuffix", "indexOf", "lastIndexOf",
	"max", "min", "get",
}

// newConfig returns the expr configuration rules are compiled with: the
// typed environment, only the safe builtins, and the node limit. The
// activity functions are declared so that the parser does not take count
// and sum for expr's builtins of the same names; calls to them never reach
// the VM, because checking rewrites them first (check.go).
func newConfig() *conf.Config {
	cfg := conf.CreateNew()
	cfg.WithEnv(env{})
	cfg.MaxNodes = MaxNodes
	for name := range cfg.Builtins {
		if !slices.Contains(safeBuiltins, name) {
			cfg.Disabled[name] = true
			delete(cfg.Builtins, name)
		}
	}
	for _, name := range activityFuncs {
		cfg.Functions[name] = &builtin.Function{
			Name: name,
			Func: func(...any) (any, error) {
				return nil, errors.New("rule: activity function was not rewritten")
			},
		}
	}
	return cfg
}
