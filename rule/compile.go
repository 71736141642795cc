package rule

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
)

// Compile parses and checks a rule, and compiles it. Mistakes are reported
// as an *Error with the line and column of the offending part. A rule must
// give a bool; one whose type depends on the data (traits.vip) compiles,
// and Eval reports an error if it gives anything but true or false.
func Compile(src string, opts CompileOptions) (*Program, error) {
	cfg := newConfig()
	tree, err := parse(src, cfg)
	if err != nil {
		return nil, err
	}
	p, err := check(src, tree, cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := compile(p, tree, cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// compile optimises a checked tree and compiles it for expr's VM and, when
// it fits, into Go closures (native.go); it records what the rule reads
// and which way new events can move it (polarity.go).
func compile(p *Program, tree *parser.Tree, cfg *conf.Config) error {
	if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
		return fromExprError(p.Source, err)
	}
	ast.Walk(&tree.Node, untypeChains{})
	var uses identifierUses
	ast.Walk(&tree.Node, &uses)
	p.daysInStage = uses["days_in_stage"]
	p.event = uses["event"]
	p.native = compileNative(tree.Node)
	p.directions = aggregateDirections(tree.Node, p.Aggregates)
	prog, err := compiler.Compile(tree, cfg)
	if err != nil {
		return fromExprError(p.Source, err)
	}

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
	return nil
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
