// Package lifecycle holds the rule language and the stage engine: it
// compiles the conditions marketers write, evaluates them on what is known
// about one contact at one instant, and settles a contact into the stage
// its history warrants. It is pure: it reads no database, and the activity
// facts a rule needs ([Program.Aggregates]) are fetched by the caller.
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
package lifecycle

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
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

// RuleError is a mistake in a rule, found when it is compiled or, for data
// that does not fit the rule (a trait of the wrong type), when it runs.
// Line and Column are 1-based and count characters, not bytes.
type RuleError struct {
	Line, Column int
	Msg          string
}

// Error returns "line L, column C: msg".
func (e *RuleError) Error() string {
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
// $-prefixed fields cannot be named in a rule (the compiler refuses any
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

// Compile parses and checks a rule. Mistakes are reported as a *RuleError
// with the line and column of the offending part. A rule must give a bool;
// one whose type depends on the data (traits.vip) compiles, and Eval
// reports an error if it gives anything but true or false.
func Compile(src string, opts CompileOptions) (*Program, error) {
	if n := utf8.RuneCountInString(src); n > MaxSourceLen {
		line, col := position(src, MaxSourceLen)
		return nil, &RuleError{Line: line, Column: col,
			Msg: fmt.Sprintf("the rule is too long: %d characters, at most %d", n, MaxSourceLen)}
	}
	if strings.TrimSpace(src) == "" {
		return nil, &RuleError{Line: 1, Column: 1, Msg: "the rule is empty"}
	}
	cfg := newConfig()

	tree, err := parser.ParseWithConfig(src, cfg)
	if err != nil {
		re := fromExprError(src, err)
		if strings.Contains(re.Msg, "exceeds maximum allowed nodes") {
			re.Msg = fmt.Sprintf("the rule is too complex: more than %d parts; split it into simpler rules", MaxNodes)
		}
		return nil, re
	}

	c := &ruleCompiler{src: src, opts: opts, p: &Program{Source: src}}
	if err := c.visit(&tree.Node, true); err != nil {
		return nil, err
	}

	typ, err := checker.Check(tree, cfg)
	if err != nil {
		return nil, fromExprError(src, err)
	}
	// Every + that joins strings copies what came before it: a chain of
	// them costs the square of its length times the texts' size.
	var joins stringJoins
	ast.Walk(&tree.Node, &joins)
	if len(joins) > MaxJoins {
		return nil, c.errorAt(joins[MaxJoins], "the rule joins too many values with +: %d, at most %d", len(joins), MaxJoins)
	}
	if typ.Kind() != reflect.Bool && typ.Kind() != reflect.Interface {
		return nil, c.errorAt(tree.Node, "the rule must be true or false, but it gives %s", describeType(typ))
	}
	if _, ok := tree.Node.(*ast.NilNode); ok {
		return nil, c.errorAt(tree.Node, "the rule must be true or false, but it gives nil")
	}
	if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
		return nil, fromExprError(src, err)
	}
	ast.Walk(&tree.Node, untypeChains{})
	var uses identifierUses
	ast.Walk(&tree.Node, &uses)
	c.p.daysInStage = uses["days_in_stage"]
	c.p.event = uses["event"]
	c.p.native = compileNative(tree.Node)
	c.p.directions = aggregateDirections(tree.Node, c.p.Aggregates)
	prog, err := compiler.Compile(tree, cfg)
	if err != nil {
		return nil, fromExprError(src, err)
	}

	p := c.p
	p.program = prog
	nAgg, nAnn := len(p.Aggregates), len(p.Anniversaries)
	p.runs.New = func() any {
		r := &run{}
		r.vm.MemoryBudget = memoryBudget
		r.env.Num = make([]float64, nAgg)
		r.env.Ever = make([]bool, nAgg)
		r.env.Ann = make([]float64, nAnn)
		return r
	}
	return p, nil
}

// ReadsTraits reports whether the rule reads the contact's traits (the
// traits variable or days_to_anniversary), so that a pass whose rules do
// not can skip loading them.
func (p *Program) ReadsTraits() bool {
	return p.traits || len(p.Anniversaries) > 0
}

// Needs returns the aggregates the programs read, each once, in order of
// first appearance, so that one query can fetch them for a batch of
// contacts. Nil programs are skipped.
func Needs(programs ...*Program) []Aggregate {
	var out []Aggregate
	seen := make(map[Aggregate]bool)
	for _, p := range programs {
		if p == nil {
			continue
		}
		for _, a := range p.Aggregates {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// newConfig returns the expr configuration rules are compiled with: the
// typed environment, only the safe builtins, and the node limit. The
// activity functions are declared so that the parser does not take count
// and sum for expr's builtins of the same names; calls to them never reach
// the VM, because the compiler rewrites them first.
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
				return nil, errors.New("lifecycle: activity function was not rewritten")
			},
		}
	}
	return cfg
}

// identifierUses records the identifiers a tree reads.
type identifierUses map[string]bool

func (u *identifierUses) Visit(np *ast.Node) {
	if n, ok := (*np).(*ast.IdentifierNode); ok {
		if *u == nil {
			*u = identifierUses{}
		}
		(*u)[n.Value] = true
	}
}

// untypeChains gives optional chains (event?.name) the type any. expr
// types event?.name as string and compiles event?.name == "x" to a string
// comparison, which fails on the nil the chain gives when there is no
// event; as any, the comparison is expr's general one, which handles nil.
type untypeChains struct{}

var anyType = reflect.TypeFor[any]()

func (untypeChains) Visit(np *ast.Node) {
	if n, ok := (*np).(*ast.ChainNode); ok {
		n.SetType(anyType)
	}
}

// ruleCompiler checks a parsed rule for what the language refuses, collects
// the facts it reads and rewrites activity calls into lookups.
type ruleCompiler struct {
	src  string
	opts CompileOptions
	p    *Program
}

// visit checks the node and its children, left to right, and returns the
// first mistake. observe is false below a member access whose full path
// has already been recorded for EvalTrace.
func (c *ruleCompiler) visit(np *ast.Node, observe bool) error {
	switch n := (*np).(type) {
	case nil:
		return nil
	case *ast.NilNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.StringNode, *ast.BytesNode:
		return nil
	case *ast.IdentifierNode:
		return c.identifier(n, observe)
	case *ast.UnaryNode:
		return c.visit(&n.Node, true)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.ChainNode:
		return c.visit(&n.Node, observe)
	case *ast.MemberNode:
		return c.member(n, observe)
	case *ast.SliceNode:
		if err := c.visit(&n.Node, true); err != nil {
			return err
		}
		if err := c.visit(&n.From, true); err != nil {
			return err
		}
		return c.visit(&n.To, true)
	case *ast.CallNode:
		return c.call(np, n)
	case *ast.BuiltinNode:
		if !slices.Contains(safeBuiltins, n.Name) {
			return c.refusedFunction(n, n.Name)
		}
		return c.visitAll(n.Arguments)
	case *ast.PredicateNode, *ast.PointerNode:
		return c.errorAt(n, "closures are not allowed in rules")
	case *ast.VariableDeclaratorNode:
		return c.errorAt(n, "let is not allowed in rules: write the expression where it is used")
	case *ast.SequenceNode:
		return c.errorAt(n, "a rule is a single expression: remove the \";\"")
	case *ast.ConditionalNode:
		if err := c.visit(&n.Cond, true); err != nil {
			return err
		}
		if err := c.visit(&n.Exp1, true); err != nil {
			return err
		}
		return c.visit(&n.Exp2, true)
	case *ast.ArrayNode:
		return c.visitAll(n.Nodes)
	case *ast.MapNode:
		return c.visitAll(n.Pairs)
	case *ast.PairNode:
		if err := c.visit(&n.Key, true); err != nil {
			return err
		}
		return c.visit(&n.Value, true)
	default:
		return c.errorAt(n, "%s is not allowed in rules", n)
	}
}

func (c *ruleCompiler) visitAll(nodes []ast.Node) error {
	for i := range nodes {
		if err := c.visit(&nodes[i], true); err != nil {
			return err
		}
	}
	return nil
}

// identifier accepts the five variables and records a bare one for
// EvalTrace.
func (c *ruleCompiler) identifier(n *ast.IdentifierNode, observe bool) error {
	if !slices.Contains(variables, n.Value) {
		if slices.Contains(activityFuncs, n.Value) {
			return c.errorAt(n, "%s is a function: call it, like %s", n.Value, example(n.Value))
		}
		return c.errorAt(n, "unknown variable %q (known: %s)", n.Value, strings.Join(variables, ", "))
	}
	if n.Value == "traits" {
		c.p.traits = true
	}
	if !observe {
		return nil
	}
	o := observable{expr: n.Value}
	switch n.Value {
	case "stage":
		o.kind = obsStage
	case "days_in_stage":
		o.kind = obsDaysInStage
	case "email":
		o.kind = obsEmail
	case "traits":
		o.kind = obsTraits
	case "event":
		o.kind = obsEvent
	}
	c.addObservable(o)
	return nil
}

// binary refuses ranges and computed patterns and checks the stage names a
// rule compares stage with.
func (c *ruleCompiler) binary(n *ast.BinaryNode) error {
	switch n.Operator {
	case "..":
		return c.errorAt(n, "the range operator \"..\" is not allowed in rules")
	case "matches":
		s, ok := n.Right.(*ast.StringNode)
		if !ok {
			return c.errorAt(leftmost(n.Right), "the pattern of matches must be a literal string like \"^vip\"")
		}
		re, err := syntax.Parse(s.Value, syntax.Perl)
		if err != nil {
			return c.errorAt(n.Right, "the pattern of matches is not a valid regular expression: %s", err)
		}
		// Matching costs the pattern's size for every character of the
		// text: a few thousand repetitions would take a second per
		// contact. Checked before compiling, which costs as much.
		if size := patternSize(re); size > MaxPatternSize {
			return c.errorAt(n.Right, "the pattern of matches is too complex: about %d steps, at most %d; use fewer or smaller repetitions", size, MaxPatternSize)
		}
		if _, err := regexp.Compile(s.Value); err != nil {
			return c.errorAt(n.Right, "the pattern of matches is not a valid regular expression: %s", err)
		}
	case "==", "!=":
		if err := c.stageLiteral(n.Left, n.Right); err != nil {
			return err
		}
		if err := c.stageLiteral(n.Right, n.Left); err != nil {
			return err
		}
	case "in", "not in":
		if id, ok := n.Right.(*ast.IdentifierNode); ok && id.Value == "stage" {
			break
		}
		if arr, ok := n.Right.(*ast.ArrayNode); ok {
			for _, el := range arr.Nodes {
				if err := c.stageLiteral(n.Left, el); err != nil {
					return err
				}
			}
		}
	}
	if err := c.visit(&n.Left, true); err != nil {
		return err
	}
	return c.visit(&n.Right, true)
}

// stageLiteral refuses a string literal that is not a stage when it is
// compared with the stage variable, so "retension" is caught on save.
func (c *ruleCompiler) stageLiteral(variable, literal ast.Node) error {
	id, ok := variable.(*ast.IdentifierNode)
	if !ok || id.Value != "stage" {
		return nil
	}
	s, ok := literal.(*ast.StringNode)
	if !ok {
		return nil
	}
	if _, err := ParseStage(s.Value); err != nil {
		return c.errorAt(s, "%s", err)
	}
	return nil
}

// member checks a field or index access and records literal paths below
// traits and event, such as traits.plan or event.properties.revenue.
func (c *ruleCompiler) member(n *ast.MemberNode, observe bool) error {
	root, path, literal := memberPath(n)
	if literal && root.Value == "event" {
		if !slices.Contains(eventFields, path[0]) {
			return c.errorAt(n.Property, "event has no field %q (fields: %s)", path[0], strings.Join(eventFields, ", "))
		}
	}
	if literal && observe && (root.Value == "traits" || root.Value == "event") {
		if err := c.identifier(root, false); err != nil {
			return err
		}
		kind := obsTraits
		if root.Value == "event" {
			kind = obsEvent
		}
		c.addObservable(observable{expr: pathString(root.Value, path), kind: kind, path: path})
		observe = false
	}
	if err := c.visit(&n.Node, observe); err != nil {
		return err
	}
	return c.visit(&n.Property, true)
}

// memberPath returns the root variable and the keys of a chain of member
// accesses with literal keys (a.b["c"]?.d), and whether it is one.
func memberPath(n *ast.MemberNode) (*ast.IdentifierNode, []string, bool) {
	var keys []string
	var node ast.Node = n
	for {
		switch m := node.(type) {
		case *ast.ChainNode:
			node = m.Node
			continue
		case *ast.MemberNode:
			s, ok := m.Property.(*ast.StringNode)
			if !ok || m.Method {
				return nil, nil, false
			}
			keys = append(keys, s.Value)
			node = m.Node
			continue
		case *ast.IdentifierNode:
			slices.Reverse(keys)
			return m, keys, true
		}
		return nil, nil, false
	}
}

// pathString writes a member path the way a rule would: traits.plan,
// traits["first name"].
func pathString(root string, path []string) string {
	var b strings.Builder
	b.WriteString(root)
	for _, k := range path {
		if isIdent(k) {
			b.WriteByte('.')
			b.WriteString(k)
		} else {
			b.WriteByte('[')
			b.WriteString(strconv.Quote(k))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// call checks a function call and rewrites an activity call into a lookup
// of the value the caller supplies.
func (c *ruleCompiler) call(np *ast.Node, n *ast.CallNode) error {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		return c.errorAt(n, "only functions can be called in rules (known: %s)", knownFunctions())
	}
	name := id.Value
	if !slices.Contains(activityFuncs, name) {
		return c.refusedFunction(n, name)
	}
	var kind AggKind
	var want []string // what each argument is, for messages
	switch name {
	case "count":
		kind, want = AggCount, []string{"name", "window"}
	case "sum":
		kind, want = AggSum, []string{"name", "property", "window"}
	case "distinct":
		kind, want = AggDistinct, []string{"name", "property", "window"}
	case "days_since":
		kind, want = AggDaysSince, []string{"name"}
	case "ever":
		kind, want = AggEver, []string{"name"}
	case "days_to_anniversary":
		want = []string{"trait"}
	}
	if len(n.Arguments) != len(want) {
		return c.errorAt(n, "%s takes %d argument%s, like %s, but has %d",
			name, len(want), plural(len(want)), example(name), len(n.Arguments))
	}
	args := make([]string, len(want))
	for i, arg := range n.Arguments {
		s, ok := arg.(*ast.StringNode)
		if !ok {
			return c.errorAt(leftmost(arg), "the %s of %s must be a literal string like %q", want[i], name, exampleArg(want[i]))
		}
		if s.Value == "" {
			return c.errorAt(arg, "the %s of %s must not be empty", want[i], name)
		}
		args[i] = s.Value
	}

	if name == "days_to_anniversary" {
		i := slices.Index(c.p.Anniversaries, args[0])
		if i < 0 {
			i = len(c.p.Anniversaries)
			c.p.Anniversaries = append(c.p.Anniversaries, args[0])
		}
		c.addObservable(observable{expr: fmt.Sprintf("days_to_anniversary(%q)", args[0]), kind: obsAnniversary, index: i})
		*np = c.slot(annSlot, i, n)
		return nil
	}

	a := Aggregate{Kind: kind, Event: args[0]}
	if kind == AggSum || kind == AggDistinct {
		a.Property = args[1]
	}
	if kind == AggCount || kind == AggSum || kind == AggDistinct {
		wArg := n.Arguments[len(args)-1]
		w, err := ParseWindow(args[len(args)-1])
		if err != nil {
			return c.errorAt(wArg, "%s", windowMessage(err, c.opts))
		}
		if w.Enrolment && !c.opts.AllowEnrolment {
			return c.errorAt(wArg, "the window \"enrolment\" is only allowed in a sequence's step conditions, exit and goal")
		}
		a.Window = w
	}
	i := slices.Index(c.p.Aggregates, a)
	if i < 0 {
		i = len(c.p.Aggregates)
		c.p.Aggregates = append(c.p.Aggregates, a)
	}
	c.addObservable(observable{expr: a.String(), kind: obsAggregate, index: i})
	if kind == AggEver {
		*np = c.slot(everSlot, i, n)
	} else {
		*np = c.slot(numSlot, i, n)
	}
	return nil
}

// slot returns the lookup $slot[i] that replaces an activity call, placed
// where the call was so that errors point at it.
func (c *ruleCompiler) slot(name string, i int, at ast.Node) ast.Node {
	loc := at.Location()
	id := &ast.IdentifierNode{Value: name}
	id.SetLocation(loc)
	idx := &ast.IntegerNode{Value: i}
	idx.SetLocation(loc)
	m := &ast.MemberNode{Node: id, Property: idx}
	m.SetLocation(loc)
	return m
}

// windowMessage rewords a window error for where it is used.
func windowMessage(err error, opts CompileOptions) string {
	msg := err.Error()
	if opts.AllowEnrolment {
		msg = strings.Replace(msg, "1y or all", "1y, all or enrolment", 1)
	}
	return msg
}

// refusedFunction explains why a function cannot be called.
func (c *ruleCompiler) refusedFunction(n ast.Node, name string) error {
	switch name {
	case "all", "any", "none", "one", "filter", "map", "find", "findIndex", "findLast",
		"findLastIndex", "groupBy", "sortBy", "reduce", "count", "sum":
		return c.errorAt(n, "%s is not allowed in rules: functions that loop over a list are refused", name)
	case "repeat", "split", "splitAfter", "replace", "join", "toJSON", "fromJSON", "toBase64", "fromBase64",
		"keys", "values", "toPairs", "fromPairs", "flatten", "concat", "sort", "uniq", "reverse", "take",
		"mean", "median", "first", "last", "type", "bitnot":
		return c.errorAt(n, "%s is not allowed in rules", name)
	case "now", "date", "duration", "timezone":
		return c.errorAt(n, "%s is not allowed in rules: use days_since, days_in_stage or days_to_anniversary", name)
	}
	return c.errorAt(n, "unknown function %q (known: %s)", name, knownFunctions())
}

// knownFunctions lists the functions a rule may call, for errors.
func knownFunctions() string {
	return strings.Join(activityFuncs, ", ") + "; builtins: " + strings.Join(safeBuiltins, ", ")
}

func (c *ruleCompiler) addObservable(o observable) {
	for _, have := range c.p.observe {
		if have.expr == o.expr {
			return
		}
	}
	c.p.observe = append(c.p.observe, o)
}

// errorAt returns a *RuleError at the start of node n.
func (c *ruleCompiler) errorAt(n ast.Node, format string, args ...any) *RuleError {
	line, col := position(c.src, n.Location().From)
	return &RuleError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// leftmost returns the node of n's subtree that starts first in the
// source: an error about an argument such as traits.x points at traits, not
// at x, where expr places the member access.
func leftmost(n ast.Node) ast.Node {
	var f firstNode
	ast.Walk(&n, &f)
	return f.node
}

type firstNode struct{ node ast.Node }

func (f *firstNode) Visit(np *ast.Node) {
	if f.node == nil || (*np).Location().From < f.node.Location().From {
		f.node = *np
	}
}

// fromExprError turns an error of expr's parser, checker or VM into a
// *RuleError, keeping its position.
func fromExprError(src string, err error) *RuleError {
	var fe *file.Error
	if errors.As(err, &fe) {
		line, col := position(src, fe.From)
		return &RuleError{Line: line, Column: col, Msg: fe.Message}
	}
	return &RuleError{Line: 1, Column: 1, Msg: err.Error()}
}

// position returns the 1-based line and column of the character at
// offset (counted in characters) in src.
func position(src string, offset int) (line, col int) {
	line, col = 1, 1
	i := 0
	for _, r := range src {
		if i == offset {
			break
		}
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
		i++
	}
	return line, col
}

// describeType names a result type for a marketer.
func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "text"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a map"
	default:
		return t.String()
	}
}

func example(name string) string {
	switch name {
	case "count":
		return `count("page_viewed", "14d")`
	case "sum":
		return `sum("order_completed", "revenue", "365d")`
	case "distinct":
		return `distinct("product_viewed", "sku", "30d")`
	case "days_since":
		return `days_since("order_completed")`
	case "ever":
		return `ever("review_posted")`
	case "days_to_anniversary":
		return `days_to_anniversary("birthday")`
	}
	return name + "()"
}

func exampleArg(what string) string {
	switch what {
	case "name":
		return "order_completed"
	case "property":
		return "revenue"
	case "window":
		return "14d"
	case "trait":
		return "birthday"
	}
	return what
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// patternSize estimates the size of re's compiled program without
// compiling it (repetitions expand into copies), saturating well above
// MaxPatternSize.
func patternSize(re *syntax.Regexp) int {
	const ceiling = 1 << 30
	add := func(a, b int) int { return min(a+b, ceiling) }
	switch re.Op {
	case syntax.OpLiteral:
		return max(len(re.Rune), 1)
	case syntax.OpRepeat:
		n := re.Max
		if n < 0 {
			n = re.Min + 1 // x{n,}: n copies and a star
		}
		sub := patternSize(re.Sub[0])
		if n > 0 && sub > ceiling/n {
			return ceiling
		}
		return add(max(n, 1)*sub, 1)
	case syntax.OpConcat, syntax.OpAlternate, syntax.OpCapture, syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		size := 1
		for _, sub := range re.Sub {
			size = add(size, patternSize(sub))
		}
		return size
	}
	return 1
}

// stringJoins collects the + nodes whose operands may be strings (typed
// string, or any, as traits are), in source order.
type stringJoins []ast.Node

func (j *stringJoins) Visit(np *ast.Node) {
	b, ok := (*np).(*ast.BinaryNode)
	if !ok || b.Operator != "+" {
		return
	}
	for _, side := range []ast.Node{b.Left, b.Right} {
		if t := side.Type(); t == nil || t.Kind() == reflect.String || t.Kind() == reflect.Interface {
			*j = append(*j, b)
			return
		}
	}
}
