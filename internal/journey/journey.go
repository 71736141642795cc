// Package journey reads the journey file — everything a marketer defines,
// in one YAML file — and checks all of it before anything is stored: every
// mistake is reported with the file, line and column, all at once.
package journey

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/suggest"
	"github.com/waymark/waymark/internal/webhook"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// Pos is a place in the journey file (1-based).
type Pos struct{ Line, Col int }

// Error is one mistake in a journey file.
type Error struct {
	File string
	Pos
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every mistake found in a file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Rule is a transition rule as written.
type Rule struct {
	Name string
	From []rule.Stage
	To   rule.Stage
	When string
	Pos  Pos
}

// Journey is a parsed and checked journey file.
type Journey struct {
	File  string
	Rules []Rule
	// Programs are the compiled conditions, by rule name.
	Programs map[string]*rule.Program
	// Tones are the tone rules in order; TonePrograms the compiled
	// conditions of all but the last (the default).
	Tones        []ToneRule
	TonePrograms []*rule.Program
	// Templates have been compiled and rendered against a sample contact.
	Templates []templates.Template
	Sequences []campaigns.Sequence
	Holds     []campaigns.Hold
	Offers    []campaigns.Offer
	Settings  campaigns.Settings
	// Webhooks are the endpoints told what happens (webhooks out).
	Webhooks []webhook.Endpoint
	// Segments and Broadcasts: see broadcasts.go.
	Segments   []campaigns.Segment
	Broadcasts []campaigns.Broadcast
	// Conversion is the conversion goal (conversion.go):
	// report.DefaultGoal when the file has no conversion: section.
	Conversion report.Goal
}

// Load reads and checks the journey file at path.
func Load(path string) (*Journey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// MaxFileSize bounds a journey file.
const MaxFileSize = 4 << 20

// Parse checks a journey file's content; name is used in error messages.
func Parse(name string, data []byte) (*Journey, error) {
	p := &parser{file: name, lines: bytes.Split(data, []byte("\n")), broken: map[string]bool{}}
	if len(data) > MaxFileSize {
		return nil, Errors{{File: name, Pos: Pos{1, 1}, Msg: fmt.Sprintf("the file is %d bytes, over the limit of %d", len(data), MaxFileSize)}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, p.yamlError(data, err)
	}
	j := &Journey{File: name, Programs: map[string]*rule.Program{}, Settings: campaigns.DefaultSettings(), Conversion: report.DefaultGoal()}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return j, nil // an empty file is an empty journey
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "a journey file is a mapping of sections (rules:, tones:, sequences:…)")
		return nil, p.errs
	}
	sections := map[string]func(*yaml.Node){
		"rules":      func(n *yaml.Node) { j.Rules = p.rules(n, j) },
		"tones":      func(n *yaml.Node) { j.Tones = p.tones(n, j) },
		"templates":  func(n *yaml.Node) { j.Templates = p.templates(n, j) },
		"sequences":  func(n *yaml.Node) { p.sequences(n, j) },
		"holds":      func(n *yaml.Node) { p.holds(n, j) },
		"offers":     func(n *yaml.Node) { p.offers(n, j) },
		"sending":    func(n *yaml.Node) { p.sending(n, j) },
		"webhooks":   func(n *yaml.Node) { p.webhooks(n, j) },
		"conversion": func(n *yaml.Node) { p.conversion(n, j) },
	}
	p.broadcastSections(sections, j)
	p.mapping(root, "the journey", sections, nil)
	p.checkRefs(j)
	p.checkBroadcastRefs(j)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(a, b int) bool {
			if p.errs[a].Line != p.errs[b].Line {
				return p.errs[a].Line < p.errs[b].Line
			}
			return p.errs[a].Col < p.errs[b].Col
		})
		return nil, p.errs
	}
	return j, nil
}

type parser struct {
	file  string
	lines [][]byte
	errs  Errors
	refs  []stepRef // template, tone and offer names to check at the end
	// variants are the tone variants templates define, checked against the
	// tones: section (a misspelt variant would never be sent).
	variants []stepRef
	// broken are the templates refused for a mistake of their own.
	broken map[string]bool
	bc     *broadcastRefs // segments: and broadcasts: (broadcasts.go)
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Pos: Pos{n.Line, n.Column}, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) yamlError(data []byte, err error) error {
	line, msg := yamlMessage(err)
	// yaml.v3 names the line where the enclosing block starts (a mistake
	// on line 12 comes as "line 3: did not find expected '-' indicator"):
	// the line that is wrong is the first whose addition gives the file
	// that error, found by parsing prefixes.
	if bad := p.firstBadLine(data, line, msg); bad > line {
		msg += fmt.Sprintf(" (in the block that starts on line %d)", line)
		line = bad
	}
	col := 1
	if line-1 < len(p.lines) {
		indent := indentOf(p.lines[line-1])
		col = indent + 1
		// The line above it, ignoring blank lines and comments.
		for above := line - 2; above >= 0; above-- {
			t := bytes.TrimSpace(p.lines[above])
			if len(t) == 0 || t[0] == '#' {
				continue
			}
			if other := indentOf(p.lines[above]); other != indent {
				msg += fmt.Sprintf("; check this line's indentation: %d spaces, against %d on line %d", indent, other, above+1)
			}
			break
		}
	}
	return Errors{{File: p.file, Pos: Pos{line, col}, Msg: "not valid YAML: " + msg}}
}

// yamlMessage splits yaml.v3's "yaml: line N: message".
func yamlMessage(err error) (int, string) {
	msg := err.Error()
	line := 1
	if i := strings.Index(msg, "line "); i >= 0 {
		fmt.Sscanf(msg[i:], "line %d", &line)
		if j := strings.Index(msg[i:], ": "); j >= 0 {
			msg = msg[i+j+2:]
		}
	}
	return line, strings.TrimPrefix(msg, "yaml: ")
}

// firstBadLine returns the first line from which the file's first lines
// fail to parse with the same error (line, msg) as the whole file, or 0.
func (p *parser) firstBadLine(data []byte, line int, msg string) int {
	fails := func(k int) bool { // the first k lines give the error
		end := 0
		for i := 0; i < k && end <= len(data); i++ {
			j := bytes.IndexByte(data[end:], '\n')
			if j < 0 {
				end = len(data)
				break
			}
			end += j + 1
		}
		var n yaml.Node
		err := yaml.Unmarshal(data[:min(end, len(data))], &n)
		if err == nil {
			return false
		}
		l, m := yamlMessage(err)
		return l == line && m == msg
	}
	lo, hi := line-1, len(p.lines) // fails(hi); the answer is in (lo, hi]
	if lo < 0 || !fails(hi) {
		return 0
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

func indentOf(l []byte) int {
	n := 0
	for n < len(l) && l[n] == ' ' {
		n++
	}
	return n
}

// mapping walks a mapping's keys, calling the handler of each known key;
// an unknown key is an error that lists the known ones (and suggests the
// closest). later lists keys this version knows but does not take.
func (p *parser) mapping(n *yaml.Node, what string, known map[string]func(*yaml.Node), later []string) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping of keys", what)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			p.errorf(k, "%s: %q is given twice", what, k.Value)
			continue
		}
		seen[k.Value] = true
		if h, ok := known[k.Value]; ok {
			h(v)
			continue
		}
		if contains(later, k.Value) {
			p.errorf(k, "section %q is not supported by this version of waymark yet", k.Value)
			continue
		}
		names := make([]string, 0, len(known))
		for name := range known {
			names = append(names, name)
		}
		sort.Strings(names)
		msg := fmt.Sprintf("%s: unknown key %q (known: %s)", what, k.Value, strings.Join(names, ", "))
		if s := suggest.Closest(k.Value, append(names, later...)); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		p.errorf(k, "%s", msg)
	}
}

func (p *parser) str(n *yaml.Node, what string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, "%s must be text", what)
		return ""
	}
	return n.Value
}

func (p *parser) stage(n *yaml.Node, what string) (rule.Stage, bool) {
	s := p.str(n, what)
	if s == "" {
		return "", false
	}
	st, err := rule.ParseStage(s)
	if err != nil {
		p.errorf(n, "%s: %v", what, err)
		return "", false
	}
	return st, true
}

func (p *parser) rules(n *yaml.Node, j *Journey) []Rule {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "rules must be a list")
		return nil
	}
	var out []Rule
	names := map[string]int{}
	for _, rn := range n.Content {
		r := Rule{Pos: Pos{rn.Line, rn.Column}}
		var nameNode, fromNode, toNode, whenNode *yaml.Node
		what := fmt.Sprintf("rule at line %d", rn.Line)
		if v := valueOf(rn, "name"); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
			what = fmt.Sprintf("rule %q", v.Value)
		}
		// The fields as written, for lifecycle.CheckRule; a value that is
		// not text is reported here and left out there.
		var (
			from                     []string
			fromNodes                []*yaml.Node
			to                       string
			fromText, toText, whenOK = true, true, true
		)
		p.mapping(rn, what, map[string]func(*yaml.Node){
			"name": func(v *yaml.Node) { nameNode = v; r.Name = strings.TrimSpace(p.str(v, "name")) },
			"from": func(v *yaml.Node) {
				fromNode = v
				items := []*yaml.Node{v}
				if v.Kind == yaml.SequenceNode {
					items = v.Content
				}
				for _, s := range items {
					if st, ok := p.text(s, "from"); ok {
						from, fromNodes = append(from, st), append(fromNodes, s)
					} else {
						fromText = false
					}
				}
			},
			"to":   func(v *yaml.Node) { toNode = v; to, toText = p.text(v, "to") },
			"when": func(v *yaml.Node) { whenNode = v; r.When, whenOK = p.text(v, "when") },
		}, nil)
		if rn.Kind != yaml.MappingNode {
			continue
		}
		switch {
		case nameNode == nil || r.Name == "":
			p.errorf(rn, "%s: missing name", what)
		case names[r.Name] != 0:
			p.errorf(nameNode, "rule %q: the name is already used by the rule at line %d", r.Name, names[r.Name])
		default:
			names[r.Name] = rn.Line
		}
		if fromNode == nil {
			p.errorf(rn, "%s: missing from (the stage or stages it moves contacts out of)", what)
		}
		if toNode == nil {
			p.errorf(rn, "%s: missing to (the stage it moves contacts into)", what)
		}
		if whenNode == nil {
			p.errorf(rn, "%s: missing when (the condition that moves a contact)", what)
		}
		// The rule itself is checked as the rule editor checks it; each
		// mistake is placed at its field, unless the field is missing or
		// not text (said above).
		checked, errs := lifecycle.CheckRule(r.Name, from, to, r.When)
		for _, e := range errs {
			switch {
			case e.Field == "name" && nameNode != nil && r.Name != "":
				p.errorf(nameNode, "%s: %v", what, e)
			case e.Field == "from" && e.Index >= 0:
				p.errorf(fromNodes[e.Index], "from: %v", e.Err)
			case e.Field == "from" && fromNode != nil && fromText:
				p.errorf(fromNode, "from: %v", e.Err)
			case e.Field == "to" && toNode != nil && toText:
				p.errorf(toNode, "to: %v", e.Err)
			case e.Field == "when" && whenNode != nil && whenOK:
				p.exprError(whenNode, what+": when", e.Err)
			}
		}
		r.From, r.To = checked.From, checked.To
		if len(errs) == 0 {
			j.Programs[r.Name] = checked.When
		}
		out = append(out, r)
	}
	return out
}

// text is str, and whether the value was text (str said so otherwise).
func (p *parser) text(n *yaml.Node, what string) (string, bool) {
	before := len(p.errs)
	s := p.str(n, what)
	return s, len(p.errs) == before
}

// exprError reports a rule compile error at its place in the file.
func (p *parser) exprError(n *yaml.Node, what string, err error) {
	var re *rule.Error
	if !errors.As(err, &re) {
		p.errorf(n, "%s: %v", what, err)
		return
	}
	pos := p.exprPos(n, re.Line, re.Column)
	p.errs = append(p.errs, &Error{File: p.file, Pos: pos, Msg: fmt.Sprintf("%s: %s", what, re.Msg)})
}

// exprPos maps a (line, column) inside a scalar's value to the file.
func (p *parser) exprPos(n *yaml.Node, line, col int) Pos {
	if line < 1 {
		line = 1
	}
	if col < 1 {
		col = 1
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// The value starts on the next line; its first line sets the
		// block's indentation, which YAML strips from every line.
		fl := n.Line + line // 1-based file line
		indent := 0
		if n.Line < len(p.lines) {
			l := p.lines[n.Line]
			for indent < len(l) && l[indent] == ' ' {
				indent++
			}
		}
		return Pos{fl, indent + col}
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if line == 1 {
			return Pos{n.Line, n.Column + col}
		}
	default:
		if line == 1 {
			return Pos{n.Line, n.Column + col - 1}
		}
	}
	// A later line of a flow scalar: YAML folded it, so only the line is
	// certain.
	fl := n.Line + line - 1
	indent := 0
	if fl-1 < len(p.lines) {
		l := p.lines[fl-1]
		for indent < len(l) && l[indent] == ' ' {
			indent++
		}
	}
	return Pos{fl, indent + col}
}

// valueOf returns the value of key in mapping n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
