package rule

import (
	"github.com/expr-lang/expr/ast"
)

// Which way can new events move a rule? New events of a name can only
// raise count, distinct and ever of that name and only lower days_since of
// it; sum can go either way (a refund). A rule that uses an aggregate only
// where a higher value cannot make it true — days_since("order_completed")
// > 90, count("support_ticket_opened", "30d") == 0 is not one of these
// (== goes both ways), !(count("order_completed", "90d") >= 1) — cannot be
// made true by new events of that name: a rule false before them stays
// false. Event-driven evaluation then need not load a contact for them.

// Directions an aggregate can move a rule's result when new events arrive.
const (
	canRaise uint8 = 1 << iota // new events can turn the rule from false to true
	canLower                   // new events can turn it from true to false
)

// aggregateDirections returns, for each aggregate of a rule (by slot
// index), how new events of its name can move the rule's result. Anything
// the analysis does not know is taken as both.
func aggregateDirections(root ast.Node, aggs []Aggregate) []uint8 {
	out := make([]uint8, len(aggs))
	var walk func(n ast.Node, sign int)
	mark := func(i, sign int) {
		if i < 0 || i >= len(aggs) {
			return
		}
		mono := 1 // count, distinct, ever rise with new events
		switch aggs[i].Kind {
		case AggDaysSince:
			mono = -1
		case AggSum:
			mono = 0
		}
		switch s := sign * mono; {
		case s > 0:
			out[i] |= canRaise
		case s < 0:
			out[i] |= canLower
		default:
			out[i] |= canRaise | canLower
		}
	}
	// unknown marks every aggregate below n as moving the result either way.
	unknown := func(n ast.Node) {
		if n == nil {
			return
		}
		ast.Walk(&n, slotMarker(func(i int) { mark(i, 0) }))
	}
	walk = func(n ast.Node, sign int) {
		switch n := n.(type) {
		case nil:
		case *ast.MemberNode:
			if i, ok := slotOf(n, numSlot); ok {
				mark(i, sign)
				return
			}
			if i, ok := slotOf(n, everSlot); ok {
				mark(i, sign)
				return
			}
			unknown(n)
		case *ast.UnaryNode:
			switch n.Operator {
			case "!", "not", "-":
				walk(n.Node, -sign)
			case "+":
				walk(n.Node, sign)
			default:
				unknown(n.Node)
			}
		case *ast.BinaryNode:
			switch n.Operator {
			case "&&", "and", "||", "or", "+":
				walk(n.Left, sign)
				walk(n.Right, sign)
			case ">", ">=", "-":
				walk(n.Left, sign)
				walk(n.Right, -sign)
			case "<", "<=":
				walk(n.Left, -sign)
				walk(n.Right, sign)
			default:
				unknown(n.Left)
				unknown(n.Right)
			}
		case *ast.ConditionalNode:
			unknown(n.Cond)
			walk(n.Exp1, sign)
			walk(n.Exp2, sign)
		default:
			unknown(n)
		}
	}
	walk(root, 1)
	return out
}

// slotMarker calls mark for every $num / $ever slot in a tree.
type slotMarker func(i int)

func (m slotMarker) Visit(np *ast.Node) {
	if i, ok := slotOf(*np, numSlot); ok {
		m(i)
	} else if i, ok := slotOf(*np, everSlot); ok {
		m(i)
	}
}
