package rule

import (
	"fmt"
	"reflect"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/parser"
)

// check checks a parsed rule against the language and returns what it
// found: the refusals of the language (ruleChecker, which also collects
// the facts the rule reads and rewrites activity calls into lookups of
// them), then expr's type check, the joins of strings, and the result: a
// rule must give a bool, or a value whose type depends on the data
// (traits.vip), which Eval checks when it runs.
func check(src string, tree *parser.Tree, cfg *conf.Config, opts CompileOptions) (*Program, error) {
	c := &ruleChecker{src: src, opts: opts, p: &Program{Source: src}}
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
	return c.p, nil
}

// ruleChecker checks a parsed rule for what the language refuses, collects
// the facts it reads and rewrites activity calls into lookups.
type ruleChecker struct {
	src  string
	opts CompileOptions
	p    *Program
}

// visit checks the node and its children, left to right, and returns the
// first mistake. observe is false below a member access whose full path
// has already been recorded for EvalTrace.
func (c *ruleChecker) visit(np *ast.Node, observe bool) error {
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

func (c *ruleChecker) visitAll(nodes []ast.Node) error {
	for i := range nodes {
		if err := c.visit(&nodes[i], true); err != nil {
			return err
		}
	}
	return nil
}

// identifier accepts the five variables and records a bare one for
// EvalTrace.
func (c *ruleChecker) identifier(n *ast.IdentifierNode, observe bool) error {
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
func (c *ruleChecker) binary(n *ast.BinaryNode) error {
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
func (c *ruleChecker) stageLiteral(variable, literal ast.Node) error {
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
func (c *ruleChecker) member(n *ast.MemberNode, observe bool) error {
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
func (c *ruleChecker) call(np *ast.Node, n *ast.CallNode) error {
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
func (c *ruleChecker) slot(name string, i int, at ast.Node) ast.Node {
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
func (c *ruleChecker) refusedFunction(n ast.Node, name string) error {
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

func (c *ruleChecker) addObservable(o observable) {
	for _, have := range c.p.observe {
		if have.expr == o.expr {
			return
		}
	}
	c.p.observe = append(c.p.observe, o)
}

// errorAt returns a *Error at the start of node n.
func (c *ruleChecker) errorAt(n ast.Node, format string, args ...any) *Error {
	line, col := position(c.src, n.Location().From)
	return &Error{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
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
