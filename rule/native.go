package rule

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
)

// A sweep evaluates every rule for every contact: a million contacts and
// ten rules are millions of evaluations, where expr's VM, which reads the
// environment through reflection and boxes every number it touches, is
// most of the time. Most rules are logic over numbers and the stage:
//
//	count("order_completed", "365d") >= 3 || ever("review_posted")
//	days_since("order_completed") > 90 && stage in ["retention", "advocacy"]
//
// Such a rule is also compiled, from the same checked and optimised tree,
// into Go closures over the environment, which Eval runs instead of the VM.
// Anything else (traits, event, email, builtins, strings other than stage
// comparisons, integer arithmetic, conditionals...) runs on the VM as
// before. TestNativeEqualsVM checks both give the same results on random
// rules and facts.

type (
	boolFn func(e *env) bool
	numFn  func(e *env) float64
	strFn  func(e *env) string
)

// compileNative returns the rule as a closure, or nil when it uses
// anything outside the subset.
func compileNative(n ast.Node) boolFn {
	f, ok := nativeBool(n)
	if !ok {
		return nil
	}
	return f
}

func kindOf(n ast.Node) reflect.Kind {
	t := n.Type()
	if t == nil {
		return reflect.Invalid
	}
	return t.Kind()
}

func isFloat(n ast.Node) bool {
	k := kindOf(n)
	return k == reflect.Float64 || k == reflect.Float32
}

// isNumber: a float, or an integer literal (rules' integers are literals;
// integer arithmetic is left to the VM, whose overflow rules differ).
func isNumber(n ast.Node) bool {
	if isFloat(n) {
		return true
	}
	_, ok := n.(*ast.IntegerNode)
	return ok
}

// slot returns the index of a $num / $ever / $ann slot access.
func slotOf(n ast.Node, name string) (int, bool) {
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Optional || m.Method {
		return 0, false
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || id.Value != name {
		return 0, false
	}
	i, ok := m.Property.(*ast.IntegerNode)
	if !ok || i.Value < 0 {
		return 0, false
	}
	return i.Value, true
}

func nativeBool(n ast.Node) (boolFn, bool) {
	switch n := n.(type) {
	case *ast.BoolNode:
		v := n.Value
		return func(*env) bool { return v }, true
	case *ast.MemberNode:
		i, ok := slotOf(n, everSlot)
		if !ok {
			return nil, false
		}
		return func(e *env) bool { return e.Ever[i] }, true
	case *ast.UnaryNode:
		if n.Operator != "!" && n.Operator != "not" {
			return nil, false
		}
		x, ok := nativeBool(n.Node)
		if !ok {
			return nil, false
		}
		return func(e *env) bool { return !x(e) }, true
	case *ast.BinaryNode:
		return nativeBinaryBool(n)
	}
	return nil, false
}

func nativeBinaryBool(n *ast.BinaryNode) (boolFn, bool) {
	switch n.Operator {
	case "&&", "and", "||", "or":
		if kindOf(n.Left) != reflect.Bool || kindOf(n.Right) != reflect.Bool {
			return nil, false
		}
		l, ok1 := nativeBool(n.Left)
		r, ok2 := nativeBool(n.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		if n.Operator == "&&" || n.Operator == "and" {
			return func(e *env) bool { return l(e) && r(e) }, true
		}
		return func(e *env) bool { return l(e) || r(e) }, true
	case "==", "!=", "<", "<=", ">", ">=":
		if isNumber(n.Left) && isNumber(n.Right) && (isFloat(n.Left) || isFloat(n.Right)) {
			l, ok1 := nativeNum(n.Left)
			r, ok2 := nativeNum(n.Right)
			if !ok1 || !ok2 {
				return nil, false
			}
			switch n.Operator {
			case "==":
				return func(e *env) bool { return l(e) == r(e) }, true
			case "!=":
				return func(e *env) bool { return l(e) != r(e) }, true
			case "<":
				return func(e *env) bool { return l(e) < r(e) }, true
			case "<=":
				return func(e *env) bool { return l(e) <= r(e) }, true
			case ">":
				return func(e *env) bool { return l(e) > r(e) }, true
			default:
				return func(e *env) bool { return l(e) >= r(e) }, true
			}
		}
		if (n.Operator == "==" || n.Operator == "!=") && kindOf(n.Left) == reflect.String && kindOf(n.Right) == reflect.String {
			l, ok1 := nativeStr(n.Left)
			r, ok2 := nativeStr(n.Right)
			if !ok1 || !ok2 {
				return nil, false
			}
			if n.Operator == "==" {
				return func(e *env) bool { return l(e) == r(e) }, true
			}
			return func(e *env) bool { return l(e) != r(e) }, true
		}
	case "in":
		if kindOf(n.Left) != reflect.String {
			return nil, false
		}
		l, ok := nativeStr(n.Left)
		if !ok {
			return nil, false
		}
		var set []string
		switch r := n.Right.(type) {
		case *ast.ConstantNode:
			m, ok := r.Value.(map[string]struct{})
			if !ok {
				return nil, false
			}
			for s := range m {
				set = append(set, s)
			}
		case *ast.ArrayNode:
			for _, el := range r.Nodes {
				s, ok := el.(*ast.StringNode)
				if !ok {
					return nil, false
				}
				set = append(set, s.Value)
			}
		default:
			return nil, false
		}
		return func(e *env) bool {
			v := l(e)
			for _, s := range set {
				if s == v {
					return true
				}
			}
			return false
		}, true
	}
	return nil, false
}

func nativeNum(n ast.Node) (numFn, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		v := float64(n.Value)
		if int(v) != n.Value {
			return nil, false // not exact as a float
		}
		return func(*env) float64 { return v }, true
	case *ast.FloatNode:
		v := n.Value
		return func(*env) float64 { return v }, true
	case *ast.IdentifierNode:
		if n.Value == "days_in_stage" {
			return func(e *env) float64 { return e.DaysInStage }, true
		}
	case *ast.MemberNode:
		if i, ok := slotOf(n, numSlot); ok {
			return func(e *env) float64 { return e.Num[i] }, true
		}
		if i, ok := slotOf(n, annSlot); ok {
			return func(e *env) float64 { return e.Ann[i] }, true
		}
	case *ast.UnaryNode:
		if !isFloat(n.Node) {
			return nil, false
		}
		x, ok := nativeNum(n.Node)
		if !ok {
			return nil, false
		}
		switch n.Operator {
		case "-":
			return func(e *env) float64 { return -x(e) }, true
		case "+":
			return x, true
		}
	case *ast.BinaryNode:
		// Float arithmetic only: an integer literal with a float, or two
		// floats (the VM's / always divides as floats).
		if !isNumber(n.Left) || !isNumber(n.Right) || !isFloat(n.Left) && !isFloat(n.Right) {
			return nil, false
		}
		l, ok1 := nativeNum(n.Left)
		r, ok2 := nativeNum(n.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		switch n.Operator {
		case "+":
			return func(e *env) float64 { return l(e) + r(e) }, true
		case "-":
			return func(e *env) float64 { return l(e) - r(e) }, true
		case "*":
			return func(e *env) float64 { return l(e) * r(e) }, true
		case "/":
			return func(e *env) float64 { return l(e) / r(e) }, true
		}
	}
	return nil, false
}

func nativeStr(n ast.Node) (strFn, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		v := n.Value
		return func(*env) string { return v }, true
	case *ast.IdentifierNode:
		if n.Value == "stage" {
			return func(e *env) string { return e.Stage }, true
		}
	}
	return nil, false
}
