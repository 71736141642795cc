package templates

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"text/template/parse"
	"time"

	"github.com/waymark/waymark/internal/suggest"
)

// The static checker walks a parse tree with the type of dot and of every
// variable, the way text/template would evaluate it, but over every branch:
// a field that does not exist, an unknown function, a wrong number of
// arguments or a range over something that is not a finite collection is
// an error even in an {{if}} branch the sample contact does not take.
//
// Values whose type is only known when rendering (a trait, the result of
// default) have the type nil: anything goes below them.
//
// While walking, the checker also rewrites the tree:
//   - trait "x" becomes trait $ "x", so the helper sees the contact;
//   - every range body starts with {{if _wm_step $ N}}{{end}}, which
//     charges each iteration, N nodes, to the render's budget;
//   - helpers that build strings get $ as their first argument, to charge
//     what they build (printf "%s" x becomes printf $ "%s" x);
//   - a range over a value of unknown type goes through _wm_finite;
//   - in subject and text, an action whose value may be missing prints
//     through _wm_str, so a missing trait is empty and not "<no value>".

var (
	dataType    = reflect.TypeFor[Data]()
	timeType    = reflect.TypeFor[time.Time]()
	stringType  = reflect.TypeFor[string]()
	boolType    = reflect.TypeFor[bool]()
	intType     = reflect.TypeFor[int]()
	float64Type = reflect.TypeFor[float64]()
	complex128T = reflect.TypeFor[complex128]()
)

// allowedTimeMethods are the methods of time.Time a template may call.
// Local is not among them: a template must not depend on the machine.
var allowedTimeMethods = map[string]bool{
	"Format": true, "Year": true, "Month": true, "Day": true, "Hour": true,
	"Minute": true, "Second": true, "Weekday": true, "YearDay": true,
	"IsZero": true, "Unix": true, "UTC": true, "Before": true, "After": true,
	"Equal": true, "Compare": true, "AddDate": true, "Add": true, "Sub": true,
	"String": true,
}

// funcSig is what the checker knows of a function a template may call.
type funcSig struct {
	min, max int          // number of arguments; max -1: any
	ret      reflect.Type // nil: unknown until rendered
	params   []reflect.Type
	variadic bool
	// retFromArg: the result has the element type (index) or the type
	// (slice) of the first argument.
	retFromArg int
}

const (
	retFixed = iota
	retElem
	retSame
)

func sigOf(fn any, skip int) funcSig {
	t := reflect.TypeOf(fn)
	s := funcSig{variadic: t.IsVariadic()}
	for i := skip; i < t.NumIn(); i++ {
		s.params = append(s.params, t.In(i))
	}
	s.min = len(s.params)
	s.max = len(s.params)
	if s.variadic {
		s.min--
		s.max = -1
	}
	s.ret = dynamic(t.Out(0))
	return s
}

// userFuncs are the functions a marketer may call, by name.
func userFuncs(fm map[string]any) map[string]funcSig {
	any1 := funcSig{min: 1, max: -1}
	sigs := map[string]funcSig{
		"and":    any1,
		"or":     any1,
		"call":   any1,
		"not":    {min: 1, max: 1, ret: boolType},
		"len":    {min: 1, max: 1, ret: intType},
		"index":  {min: 1, max: -1, retFromArg: retElem},
		"slice":  {min: 1, max: 4, retFromArg: retSame},
		"eq":     {min: 2, max: -1, ret: boolType},
		"ne":     {min: 2, max: 2, ret: boolType},
		"lt":     {min: 2, max: 2, ret: boolType},
		"le":     {min: 2, max: 2, ret: boolType},
		"gt":     {min: 2, max: 2, ret: boolType},
		"ge":     {min: 2, max: 2, ret: boolType},
		"printf": {min: 1, max: -1, ret: stringType, params: []reflect.Type{stringType, reflect.TypeFor[[]any]()}, variadic: true},
	}
	for _, name := range [...]string{"default", "date", "dateIn", "money"} {
		sigs[name] = sigOf(fm[name], 0)
	}
	for name := range chargedFuncs {
		if name != "printf" {
			sigs[name] = sigOf(fm[name], 1) // $ is passed by the compiler
		}
	}
	return sigs
}

// dynamic returns nil for interface types: their value's type is only
// known when rendering.
func dynamic(t reflect.Type) reflect.Type {
	if t != nil && t.Kind() == reflect.Interface {
		return nil
	}
	return t
}

type tvar struct {
	name string
	typ  reflect.Type
}

type checker struct {
	w     *where
	funcs map[string]funcSig
	html  bool
	vars  []tvar
}

type checkFailure struct{ err *Error }

func (c *checker) fail(n parse.Node, format string, args ...any) {
	panic(checkFailure{c.w.at(nodeStart(n), fmt.Sprintf(format, args...))})
}

// check validates and rewrites tree in place.
func (c *checker) check(tree *parse.Tree) (err *Error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(checkFailure)
			if !ok {
				panic(r)
			}
			err = f.err
		}
	}()
	c.vars = append(c.vars[:0], tvar{"$", dataType})
	c.list(tree.Root, dataType)
	return nil
}

func (c *checker) list(l *parse.ListNode, dot reflect.Type) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		c.node(n, dot)
	}
}

func (c *checker) node(n parse.Node, dot reflect.Type) {
	switch n := n.(type) {
	case *parse.TextNode, *parse.CommentNode, *parse.BreakNode, *parse.ContinueNode:
	case *parse.ActionNode:
		t := c.pipe(n.Pipe, dot)
		c.declare(n.Pipe, t)
		if !c.html && len(n.Pipe.Decl) == 0 && t == nil {
			n.Pipe.Cmds = append(n.Pipe.Cmds, command(n.Pos, parse.NewIdentifier(fnStr).SetPos(n.Pos)))
		}
	case *parse.IfNode:
		mark := len(c.vars)
		c.declare(n.Pipe, c.pipe(n.Pipe, dot))
		c.list(n.List, dot)
		c.list(n.ElseList, dot)
		c.vars = c.vars[:mark]
	case *parse.WithNode:
		mark := len(c.vars)
		t := c.pipe(n.Pipe, dot)
		c.declare(n.Pipe, t)
		c.list(n.List, t)
		c.list(n.ElseList, dot)
		c.vars = c.vars[:mark]
	case *parse.RangeNode:
		c.rangeNode(n, dot)
	case *parse.TemplateNode:
		c.fail(n, "{{template}} and {{block}} are not supported")
	default:
		c.fail(n, "unsupported %s", n)
	}
}

func (c *checker) rangeNode(n *parse.RangeNode, dot reflect.Type) {
	mark := len(c.vars)
	t := c.pipe(n.Pipe, dot)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var key, elem reflect.Type
	switch {
	case t == nil:
		n.Pipe.Cmds = append(n.Pipe.Cmds, command(n.Pos, parse.NewIdentifier(fnFinite).SetPos(n.Pos)))
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		key, elem = intType, dynamic(t.Elem())
	case t.Kind() == reflect.Map:
		key, elem = dynamic(t.Key()), dynamic(t.Elem())
	default:
		c.fail(n.Pipe, "range over %s: only lists and maps can be ranged over", typeName(t))
	}
	switch len(n.Pipe.Decl) {
	case 1:
		c.declare1(n.Pipe, n.Pipe.Decl[0], elem)
	case 2:
		c.declare1(n.Pipe, n.Pipe.Decl[0], key)
		c.declare1(n.Pipe, n.Pipe.Decl[1], elem)
	}
	c.list(n.List, elem)
	c.list(n.ElseList, dot)
	c.vars = c.vars[:mark]
	// Count every iteration against the render's budget.
	nodes := 1 + countNodes(n.List)
	cost := &parse.NumberNode{
		NodeType: parse.NodeNumber, Pos: n.Pos, Text: fmt.Sprint(nodes),
		IsInt: true, IsUint: true, IsFloat: true,
		Int64: int64(nodes), Uint64: uint64(nodes), Float64: float64(nodes),
	}
	stepCall := command(n.Pos, parse.NewIdentifier(fnStep).SetPos(n.Pos), dollar(n.Pos), cost)
	guard := &parse.IfNode{BranchNode: parse.BranchNode{
		NodeType: parse.NodeIf, Pos: n.Pos, Line: n.Line,
		Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: n.Pos, Line: n.Line, Cmds: []*parse.CommandNode{stepCall}},
		List: &parse.ListNode{NodeType: parse.NodeList, Pos: n.Pos},
	}}
	if n.List == nil {
		n.List = &parse.ListNode{NodeType: parse.NodeList, Pos: n.Pos}
	}
	n.List.Nodes = append([]parse.Node{guard}, n.List.Nodes...)
}

// countNodes returns the number of nodes run by one pass over l, not
// counting the bodies of nested ranges, which pay for themselves.
func countNodes(l *parse.ListNode) int {
	if l == nil {
		return 0
	}
	n := 0
	for _, node := range l.Nodes {
		n++
		switch node := node.(type) {
		case *parse.ActionNode:
			n += countPipe(node.Pipe)
		case *parse.IfNode:
			n += countPipe(node.Pipe) + countNodes(node.List) + countNodes(node.ElseList)
		case *parse.WithNode:
			n += countPipe(node.Pipe) + countNodes(node.List) + countNodes(node.ElseList)
		case *parse.RangeNode:
			n += countPipe(node.Pipe) + countNodes(node.ElseList)
		}
	}
	return n
}

func countPipe(p *parse.PipeNode) int {
	if p == nil {
		return 0
	}
	n := 0
	for _, cmd := range p.Cmds {
		n += len(cmd.Args)
		for _, a := range cmd.Args {
			if sub, ok := a.(*parse.PipeNode); ok {
				n += countPipe(sub)
			}
		}
	}
	return n
}

func command(pos parse.Pos, args ...parse.Node) *parse.CommandNode {
	return &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: args}
}

func dollar(pos parse.Pos) *parse.VariableNode {
	return &parse.VariableNode{NodeType: parse.NodeVariable, Pos: pos, Ident: []string{"$"}}
}

// declare records the variables a pipeline declares or assigns.
func (c *checker) declare(p *parse.PipeNode, t reflect.Type) {
	if p == nil {
		return
	}
	for _, v := range p.Decl {
		c.declare1(p, v, t)
	}
}

func (c *checker) declare1(p *parse.PipeNode, v *parse.VariableNode, t reflect.Type) {
	name := v.Ident[0]
	if name == "$" {
		c.fail(v, "$ cannot be assigned")
	}
	if p.IsAssign {
		for i := len(c.vars) - 1; i >= 0; i-- {
			if c.vars[i].name == name {
				if c.vars[i].typ != t {
					c.vars[i].typ = nil
				}
				return
			}
		}
	}
	c.vars = append(c.vars, tvar{name, t})
}

// pipe returns the type of a pipeline's value; it does not declare its
// variables.
func (c *checker) pipe(p *parse.PipeNode, dot reflect.Type) reflect.Type {
	if p == nil {
		return nil
	}
	var final reflect.Type
	for i, cmd := range p.Cmds {
		final = c.command(cmd, dot, final, i > 0)
	}
	return final
}

func (c *checker) command(cmd *parse.CommandNode, dot, final reflect.Type, hasFinal bool) reflect.Type {
	if len(cmd.Args) == 0 {
		c.fail(cmd, "empty command")
	}
	args := cmd.Args[1:]
	switch n := cmd.Args[0].(type) {
	case *parse.FieldNode:
		return c.fields(dot, dot == dataType, ".", n.Ident, n, args, final, hasFinal, dot)
	case *parse.VariableNode:
		return c.variable(n, args, final, hasFinal, dot)
	case *parse.ChainNode:
		recv := c.arg(n.Node, dot)
		return c.fields(recv, false, n.Node.String()+".", n.Field, n, args, final, hasFinal, dot)
	case *parse.IdentifierNode:
		return c.call(n, cmd, dot, final, hasFinal, false)
	case *parse.PipeNode:
		c.noArgs(n, args, hasFinal)
		return c.pipe(n, dot)
	case *parse.NilNode:
		c.fail(n, "nil is not a command")
	default:
		c.noArgs(n, args, hasFinal)
		return c.arg(n, dot)
	}
	return nil
}

func (c *checker) noArgs(n parse.Node, args []parse.Node, hasFinal bool) {
	if len(args) > 0 || hasFinal {
		c.fail(n, "can't give argument to non-function %s", n)
	}
}

// arg returns the type of an argument.
func (c *checker) arg(n parse.Node, dot reflect.Type) reflect.Type {
	switch n := n.(type) {
	case *parse.DotNode:
		return dot
	case *parse.NilNode:
		return nil
	case *parse.BoolNode:
		return boolType
	case *parse.StringNode:
		return stringType
	case *parse.NumberNode:
		switch {
		case n.IsInt:
			return intType
		case n.IsFloat:
			return float64Type
		default:
			return complex128T
		}
	case *parse.FieldNode:
		return c.fields(dot, dot == dataType, ".", n.Ident, n, nil, nil, false, dot)
	case *parse.VariableNode:
		return c.variable(n, nil, nil, false, dot)
	case *parse.ChainNode:
		recv := c.arg(n.Node, dot)
		return c.fields(recv, false, n.Node.String()+".", n.Field, n, nil, nil, false, dot)
	case *parse.PipeNode:
		mark := len(c.vars)
		t := c.pipe(n, dot)
		c.declare(n, t)
		c.vars = c.vars[:mark]
		return t
	case *parse.IdentifierNode:
		// A function called without arguments.
		return c.call(n, command(n.Pos, n), dot, nil, false, true)
	}
	c.fail(n, "unexpected %s", n)
	return nil
}

func (c *checker) variable(n *parse.VariableNode, args []parse.Node, final reflect.Type, hasFinal bool, dot reflect.Type) reflect.Type {
	name := n.Ident[0]
	var t reflect.Type
	for i := len(c.vars) - 1; i >= 0; i-- {
		if c.vars[i].name == name {
			t = c.vars[i].typ
			break
		}
	}
	if len(n.Ident) == 1 {
		c.noArgs(n, args, hasFinal)
		return t
	}
	return c.fields(t, t == dataType, name+".", n.Ident[1:], n, args, final, hasFinal, dot)
}

// fields resolves a chain of field names (or method names) on recv. root
// tells whether recv is the template's data, for the error message; path
// is what precedes the names in it (".", "$x.").
func (c *checker) fields(recv reflect.Type, root bool, path string, names []string, n parse.Node, args []parse.Node, final reflect.Type, hasFinal bool, dot reflect.Type) reflect.Type {
	t := recv
	for i, name := range names {
		last := i == len(names)-1
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == nil {
			break
		}
		if m, ok := reflect.PointerTo(t).MethodByName(name); ok {
			if !methodAllowed(t, name) {
				c.fail(n, "method %s of %s is not allowed", name, typeName(t))
			}
			// The receiver is the first input.
			mt := m.Type
			want := mt.NumIn() - 1
			got := 0
			if last {
				got = len(args)
				if hasFinal {
					got++
				}
			}
			if got != want && !(mt.IsVariadic() && got >= want-1) {
				c.fail(n, "method %s of %s wants %d arguments, got %d", name, typeName(t), want, got)
			}
			if last {
				c.args(args, dot)
			}
			t = dynamic(mt.Out(0))
			continue
		}
		switch t.Kind() {
		case reflect.Struct:
			f, ok := t.FieldByName(name)
			if !ok || !f.IsExported() {
				msg := "unknown field " + path + strings.Join(names[:i+1], ".")
				if !root {
					msg += " in " + typeName(t)
				}
				var known []string
				for j := range t.NumField() {
					if t.Field(j).IsExported() {
						known = append(known, t.Field(j).Name)
					}
				}
				if s := suggest.Closest(name, known); s != "" {
					msg += "; did you mean " + path + strings.Join(append(slices.Clone(names[:i]), s), ".") + "?"
				}
				c.fail(n, "%s", msg)
			}
			t = dynamic(f.Type)
		case reflect.Map:
			if t.Key().Kind() != reflect.String {
				c.fail(n, "can't use field %s on %s", name, typeName(t))
			}
			t = dynamic(t.Elem())
		default:
			c.fail(n, "can't evaluate field %s in type %s", name, typeName(t))
		}
		if last && (len(args) > 0 || hasFinal) {
			c.fail(n, "%s%s is not a method but has arguments", path, strings.Join(names, "."))
		}
	}
	if t == nil {
		c.args(args, dot)
	}
	return t
}

func (c *checker) args(args []parse.Node, dot reflect.Type) {
	for _, a := range args {
		c.arg(a, dot)
	}
}

func methodAllowed(t reflect.Type, name string) bool {
	switch t {
	case timeType:
		return allowedTimeMethods[name]
	case reflect.TypeFor[time.Month](), reflect.TypeFor[time.Weekday](), reflect.TypeFor[time.Duration]():
		return true
	}
	return false
}

// call checks a function call; synthetic is true when the function is an
// argument of another command, called without arguments.
func (c *checker) call(id *parse.IdentifierNode, cmd *parse.CommandNode, dot, final reflect.Type, hasFinal, synthetic bool) reflect.Type {
	sig, ok := c.funcs[id.Ident]
	if !ok {
		c.fail(id, "unknown function %q", id.Ident)
	}
	if c.html && (id.Ident == "html" || id.Ident == "js" || id.Ident == "urlquery") {
		c.fail(id, "%s is not needed in HTML: values are escaped for where they appear", id.Ident)
	}
	args := cmd.Args[1:]
	types := make([]reflect.Type, 0, len(args)+1)
	for _, a := range args {
		types = append(types, c.arg(a, dot))
	}
	if hasFinal {
		types = append(types, final)
	}
	if len(types) < sig.min || (sig.max >= 0 && len(types) > sig.max) {
		want := fmt.Sprint(sig.min)
		switch {
		case sig.max < 0:
			want = "at least " + want
		case sig.max != sig.min:
			want = fmt.Sprintf("%d to %d", sig.min, sig.max)
		}
		c.fail(id, "wrong number of arguments for %s: want %s, got %d", id.Ident, want, len(types))
	}
	for i, at := range types {
		pt := sig.param(i)
		if pt == nil || at == nil || pt.Kind() == reflect.Interface {
			continue
		}
		if pt.Kind() == reflect.String && at.Kind() != reflect.String {
			c.fail(id, "argument %d of %s must be a string, not %s", i+1, id.Ident, typeName(at))
		}
		if isNumber(pt) && at.Kind() == reflect.String {
			c.fail(id, "argument %d of %s must be a number, not a string", i+1, id.Ident)
		}
	}
	if chargedFuncs[id.Ident] {
		if synthetic {
			c.fail(id, "%s needs arguments here: write (%s ...)", id.Ident, id.Ident)
		}
		cmd.Args = append([]parse.Node{id, dollar(id.Pos)}, args...)
	}
	switch sig.retFromArg {
	case retElem:
		t := types[0]
		for range types[1:] {
			if t == nil {
				return nil
			}
			switch t.Kind() {
			case reflect.Slice, reflect.Array, reflect.Map:
				t = dynamic(t.Elem())
			case reflect.String:
				t = reflect.TypeFor[byte]()
			default:
				return nil
			}
		}
		return t
	case retSame:
		if t := types[0]; t != nil && t.Kind() == reflect.Array {
			return reflect.SliceOf(t.Elem())
		}
		return types[0]
	}
	return sig.ret
}

func (s funcSig) param(i int) reflect.Type {
	switch {
	case i < len(s.params)-1 || (!s.variadic && i < len(s.params)):
		return s.params[i]
	case s.variadic && len(s.params) > 0:
		return s.params[len(s.params)-1].Elem()
	}
	return nil
}

func isNumber(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func typeName(t reflect.Type) string {
	if t == nil {
		return "unknown"
	}
	if t.Name() != "" {
		return t.Name()
	}
	return t.String()
}
