package journey

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// ToneRule picks a tone when its condition holds; the last has none and is
// the default.
type ToneRule struct {
	Tone string
	When string // "" for the default
	Pos  Pos
}

// MaxPartFile bounds a template body read from a file.
const MaxPartFile = 256 << 10

// source says where a template part's text came from, to place errors.
type source struct {
	node *yaml.Node // the inline scalar, or nil when read from a file
	file string     // the file it was read from, if any
}

func (p *parser) tones(n *yaml.Node, j *Journey) []ToneRule {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "tones must be a list of {tone, when}")
		return nil
	}
	var out []ToneRule
	for i, tn := range n.Content {
		tr := ToneRule{Pos: Pos{tn.Line, tn.Column}}
		var whenNode *yaml.Node
		what := fmt.Sprintf("tone rule at line %d", tn.Line)
		p.mapping(tn, what, map[string]func(*yaml.Node){
			"tone": func(v *yaml.Node) { tr.Tone = strings.TrimSpace(p.str(v, "tone")) },
			"when": func(v *yaml.Node) { whenNode = v; tr.When = p.str(v, "when") },
		}, nil)
		if tn.Kind != yaml.MappingNode {
			continue
		}
		if tr.Tone == "" {
			p.errorf(tn, "%s: missing tone (the voice's name, like friendly)", what)
		} else if !validName(tr.Tone) {
			p.errorf(tn, "%s: tone %q: use lower-case letters, digits, - and _", what, tr.Tone)
		}
		last := i == len(n.Content)-1
		switch {
		case whenNode == nil && !last:
			p.errorf(tn, "%s: only the last tone rule may have no when (it is the default); rules after it would never apply", what)
		case whenNode != nil && last:
			p.errorf(tn, "%s: the last tone rule is the default and must have no when", what)
		case whenNode != nil:
			if prog, err := rule.Compile(tr.When, rule.CompileOptions{}); err != nil {
				p.exprError(whenNode, fmt.Sprintf("tone %q: when", tr.Tone), err)
			} else {
				j.TonePrograms = append(j.TonePrograms, prog)
			}
		}
		out = append(out, tr)
	}
	return out
}

func (p *parser) templates(n *yaml.Node, j *Journey) []templates.Template {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "templates must be a list")
		return nil
	}
	var out []templates.Template
	seen := map[string]int{}
	for _, tn := range n.Content {
		t := templates.Template{Tones: map[string]templates.Content{}}
		srcs := map[[2]string]source{} // (variant, part) → where it came from
		what := fmt.Sprintf("template at line %d", tn.Line)
		if v := valueOf(tn, "name"); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
			what = fmt.Sprintf("template %q", v.Value)
		}
		content := func(variant string, dst *templates.Content) map[string]func(*yaml.Node) {
			part := func(name string, field *string) func(*yaml.Node) {
				return func(v *yaml.Node) {
					text, src, ok := p.part(v, what+": "+name)
					if ok {
						*field = text
						srcs[[2]string{variant, name}] = src
					}
				}
			}
			return map[string]func(*yaml.Node){
				"subject": part(templates.PartSubject, &dst.Subject),
				"text":    part(templates.PartText, &dst.Text),
				"html":    part(templates.PartHTML, &dst.HTML),
			}
		}
		keys := content(templates.BaseVariant, &t.Base)
		var mixed []mixedParts
		var nameNode *yaml.Node
		keys["name"] = func(v *yaml.Node) { nameNode = v; t.Name = strings.TrimSpace(p.str(v, "name")) }
		keys["tones"] = func(v *yaml.Node) {
			if v.Kind != yaml.MappingNode {
				p.errorf(v, "%s: tones must map a tone to its subject, text or html", what)
				return
			}
			for i := 0; i+1 < len(v.Content); i += 2 {
				tone := v.Content[i].Value
				p.variants = append(p.variants, stepRef{tone: v.Content[i], what: what})
				var c templates.Content
				keys := content(tone, &c)
				var inherit []string
				keys["inherit"] = func(n *yaml.Node) { inherit = p.inherit(n, fmt.Sprintf("%s, tone %q: inherit", what, tone)) }
				p.mapping(v.Content[i+1], fmt.Sprintf("%s, tone %q", what, tone), keys, nil)
				t.Tones[tone] = c
				if v.Content[i+1].Kind == yaml.MappingNode {
					mixed = append(mixed, mixedParts{tone: tone, node: v.Content[i], content: c, inherit: inherit})
				}
			}
		}
		p.mapping(tn, what, keys, nil)
		if tn.Kind != yaml.MappingNode {
			continue
		}
		switch {
		case nameNode == nil || t.Name == "":
			p.errorf(tn, "%s: missing name", what)
			continue
		case seen[t.Name] != 0:
			p.errorf(nameNode, "template %q: the name is already used by the template at line %d", t.Name, seen[t.Name])
			continue
		}
		seen[t.Name] = tn.Line
		if _, err := templates.Compile(t); err != nil {
			p.templateError(tn, srcs, err)
			p.broken[t.Name] = true
			continue
		}
		if p.mixedParts(t, mixed) {
			p.broken[t.Name] = true
			continue
		}
		out = append(out, t)
	}
	return out
}

// part reads a template part: inline text, or {file: path} relative to the
// journey file.
func (p *parser) part(v *yaml.Node, what string) (string, source, bool) {
	if v.Kind == yaml.ScalarNode {
		return v.Value, source{node: v}, true
	}
	if v.Kind == yaml.MappingNode {
		var path string
		var at *yaml.Node
		p.mapping(v, what, map[string]func(*yaml.Node){"file": func(f *yaml.Node) { at = f; path = p.str(f, "file") }}, nil)
		if at == nil || path == "" {
			p.errorf(v, "%s: give the text inline or as {file: path}", what)
			return "", source{}, false
		}
		full := path
		if !filepath.IsAbs(full) {
			full = filepath.Join(filepath.Dir(p.file), path)
		}
		st, err := os.Stat(full)
		if err != nil {
			p.errorf(at, "%s: %v", what, errors.Unwrap(err))
			return "", source{}, false
		}
		if st.Size() > MaxPartFile {
			p.errorf(at, "%s: %s is %d bytes, over the limit of %d", what, path, st.Size(), MaxPartFile)
			return "", source{}, false
		}
		b, err := os.ReadFile(full)
		if err != nil {
			p.errorf(at, "%s: %v", what, err)
			return "", source{}, false
		}
		return string(b), source{file: full}, true
	}
	p.errorf(v, "%s: give the text inline or as {file: path}", what)
	return "", source{}, false
}

// templateError places a template compile error in the journey file (or in
// the part's own file).
func (p *parser) templateError(tn *yaml.Node, srcs map[[2]string]source, err error) {
	var te *templates.Error
	if !errors.As(err, &te) {
		p.errorf(tn, "%v", err)
		return
	}
	variant := te.Variant
	if variant == "" {
		variant = templates.BaseVariant
	}
	msg := fmt.Sprintf("template %q", te.Template)
	if variant != templates.BaseVariant {
		msg += fmt.Sprintf(", tone %q", variant)
	}
	if te.Part != "" {
		msg += ", " + te.Part
	}
	msg += ": " + te.Msg
	src, ok := srcs[[2]string{variant, te.Part}]
	switch {
	case ok && src.file != "":
		p.errs = append(p.errs, &Error{File: src.file, Pos: Pos{max(te.Line, 1), max(te.Column, 1)}, Msg: msg})
	case ok && te.Line > 0:
		p.errs = append(p.errs, &Error{File: p.file, Pos: p.exprPos(src.node, te.Line, te.Column), Msg: msg})
	default:
		p.errorf(tn, "%s", msg)
	}
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

// mixedParts is a tone variant as written: which parts it overrides, and
// which of the base's it keeps on purpose (inherit: [html]).
type mixedParts struct {
	tone    string
	node    *yaml.Node
	content templates.Content
	inherit []string
}

// mixedParts refuses a tone variant that overrides the text part but not
// the HTML part (or the other way round) while the base has both: the
// email would say one thing in its text and another in its HTML ("Start a
// subscription" to a new subscriber). A variant that keeps the base's part
// on purpose says so with inherit. It reports whether it found one.
func (p *parser) mixedParts(t templates.Template, vs []mixedParts) bool {
	found := false
	base := map[string]bool{templates.PartText: !blank(t.Base.Text), templates.PartHTML: !blank(t.Base.HTML)}
	for _, v := range vs {
		own := map[string]bool{templates.PartText: !blank(v.content.Text), templates.PartHTML: !blank(v.content.HTML)}
		for _, pair := range [...][2]string{{templates.PartText, templates.PartHTML}, {templates.PartHTML, templates.PartText}} {
			a, b := pair[0], pair[1]
			if !own[a] || own[b] || !base[b] || contains(v.inherit, b) {
				continue
			}
			p.errorf(v.node, "template %q, tone %q: gives its own %s but not its own %s, so the email would pair this tone's %s with the base's %s; write the %s for this tone too, or add inherit: [%s] if the base's %s fits it",
				t.Name, v.tone, a, b, a, b, b, b, b)
			found = true
		}
	}
	return found
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

// inherit reads a variant's inherit: the base parts it keeps on purpose.
func (p *parser) inherit(n *yaml.Node, what string) []string {
	var items []*yaml.Node
	switch n.Kind {
	case yaml.SequenceNode:
		items = n.Content
	case yaml.ScalarNode:
		items = []*yaml.Node{n}
	default:
		p.errorf(n, "%s: list the parts kept from the base: [html] or [text]", what)
		return nil
	}
	var out []string
	for _, it := range items {
		v := p.str(it, what)
		if v != templates.PartHTML && v != templates.PartText {
			p.errorf(it, "%s: %q is not a part this check concerns (html or text)", what, v)
			continue
		}
		out = append(out, v)
	}
	return out
}
