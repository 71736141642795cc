package journey

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/suggest"
	"github.com/waymark/waymark/templates"
)

// broadcastRefs are the names segments: and broadcasts: refer to, checked
// once the whole file is read (sections come in any order).
type broadcastRefs struct {
	segments []*yaml.Node // segment: of sequences and audiences
	what     []string
	// subjects are the subject lines of test variants, compiled against
	// the broadcast's template at the end.
	subjects []subjectRef
}

type subjectRef struct {
	node     *yaml.Node
	template string
	what     string
}

// broadcastSections adds the segments: and broadcasts: sections.
func (p *parser) broadcastSections(sections map[string]func(*yaml.Node), j *Journey) {
	sections["segments"] = func(n *yaml.Node) { p.segments(n, j) }
	sections["broadcasts"] = func(n *yaml.Node) { p.broadcasts(n, j) }
}

func (p *parser) bcRefs() *broadcastRefs {
	if p.bc == nil {
		p.bc = &broadcastRefs{}
	}
	return p.bc
}

// segmentRef notes a reference to a segment, checked at the end.
func (p *parser) segmentRef(n *yaml.Node, what string) string {
	name := strings.TrimSpace(p.str(n, what))
	if name != "" {
		r := p.bcRefs()
		r.segments = append(r.segments, n)
		r.what = append(r.what, what)
	}
	return name
}

func (p *parser) segments(n *yaml.Node, j *Journey) {
	p.namedConditions(n, "segments", " (who is in the segment)", true, func(name, when string) {
		j.Segments = append(j.Segments, campaigns.Segment{Name: name, When: when})
	})
}

func (p *parser) broadcasts(n *yaml.Node, j *Journey) {
	p.namedList(n, "broadcasts", func(bn *yaml.Node, what string) {
		b := campaigns.Broadcast{}
		// The node of each field, for Check's mistakes.
		at := map[string]*yaml.Node{}
		// Fields whose mistake the file's reading already reported.
		reported := map[string]bool{}
		start := len(p.bcRefs().subjects)
		number := func(v *yaml.Node, field string) float64 {
			at[field] = v
			f, err := strconv.ParseFloat(p.str(v, field), 64)
			if err != nil {
				reported[field] = true
				if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
					p.errorf(v, "%s: %s must be a number", what, field[strings.LastIndex(field, ".")+1:])
				}
			}
			return f
		}
		p.mapping(bn, what, map[string]func(*yaml.Node){
			"name": func(v *yaml.Node) { at["name"] = v; b.Name = strings.TrimSpace(p.str(v, "name")) },
			"audience": func(v *yaml.Node) {
				p.mapping(v, what+": audience", map[string]func(*yaml.Node){
					"stages": func(x *yaml.Node) {
						at["audience.stages"] = x
						items := []*yaml.Node{x}
						if x.Kind == yaml.SequenceNode {
							items = x.Content
							if len(items) == 0 {
								p.errorf(x, "%s: audience: stages: name at least one stage, or leave stages out for every stage", what)
							}
						}
						for _, it := range items {
							if st, ok := p.stage(it, what+": audience: stages"); ok {
								b.Audience.Stages = append(b.Audience.Stages, st)
							}
						}
					},
					"segment": func(x *yaml.Node) {
						at["audience.segment"] = x
						b.Audience.Segment = p.segmentRef(x, what+": audience")
					},
				}, nil)
			},
			"template": func(v *yaml.Node) {
				at["template"] = v
				b.Template = strings.TrimSpace(p.str(v, "template"))
				p.refs = append(p.refs, stepRef{template: v, what: what})
			},
			"send_at":  func(v *yaml.Node) { at["send_at"] = v; b.SendAt = strings.TrimSpace(p.str(v, "send_at")) },
			"schedule": func(v *yaml.Node) { at["schedule"] = v; b.Schedule = strings.TrimSpace(p.str(v, "schedule")) },
			"throttle": func(v *yaml.Node) { b.Throttle = number(v, "throttle") },
			"test":     func(v *yaml.Node) { at["test"] = v; b.Test = p.abTest(v, what, at, reported, number) },
		}, nil)
		if bn.Kind != yaml.MappingNode {
			return
		}
		for _, e := range b.Check() {
			_, given := at[e.Field]
			if reported[e.Field] || (!given && strings.HasPrefix(e.Field, "test.") && !strings.HasPrefix(e.Field, "test.variants[")) {
				continue // said already (not a number, or missing)
			}
			node := bn
			for f := e.Field; f != ""; f = parentField(f) {
				if n, ok := at[f]; ok {
					node = n
					break
				}
			}
			if e.Field == "name" && b.Name == "" {
				continue // reported as missing by namedList
			}
			msg := e.Msg
			if strings.HasPrefix(e.Field, "test.variants[") || node == bn {
				msg = strings.ReplaceAll(e.Field, ".", ": ") + ": " + msg
			} else {
				msg = e.Field[strings.LastIndex(e.Field, ".")+1:] + ": " + msg
			}
			p.errorf(node, "%s: %s", what, msg)
		}
		// Subject variants without a template of their own try their
		// subject on the broadcast's.
		for i := start; i < len(p.bcRefs().subjects); i++ {
			if r := &p.bcRefs().subjects[i]; r.template == "" {
				r.template = b.Template
			}
		}
		j.Broadcasts = append(j.Broadcasts, b)
	})
}

// parentField is the field that holds f ("test.share" → "test"; "test"
// → "").
func parentField(f string) string {
	if i := strings.LastIndexAny(f, ".["); i >= 0 {
		return f[:i]
	}
	return ""
}

// abTest reads a broadcast's test: section; at records each field's node.
func (p *parser) abTest(n *yaml.Node, what string, at map[string]*yaml.Node, reported map[string]bool, number func(*yaml.Node, string) float64) *campaigns.ABTest {
	what += ": test"
	t := &campaigns.ABTest{}
	p.mapping(n, what, map[string]func(*yaml.Node){
		"variants": func(v *yaml.Node) {
			at["test.variants"] = v
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "%s: variants is a list of templates, or of {subject: ...} to try subject lines", what)
				return
			}
			for i, vn := range v.Content {
				field := fmt.Sprintf("test.variants[%d]", i)
				at[field] = vn
				vw := fmt.Sprintf("%s: variant %d", what, i+1)
				var va campaigns.Variant
				if vn.Kind == yaml.ScalarNode {
					va.Template = strings.TrimSpace(p.str(vn, vw))
					p.refs = append(p.refs, stepRef{template: vn, what: vw})
				} else {
					p.mapping(vn, vw, map[string]func(*yaml.Node){
						"template": func(x *yaml.Node) {
							va.Template = strings.TrimSpace(p.str(x, "template"))
							p.refs = append(p.refs, stepRef{template: x, what: vw})
						},
						"subject": func(x *yaml.Node) {
							at[field+".subject"] = x
							va.Subject = p.str(x, "subject")
							if strings.TrimSpace(va.Subject) != "" {
								p.bcRefs().subjects = append(p.bcRefs().subjects, subjectRef{node: x, what: vw})
							}
						},
					}, nil)
					if n := len(p.bcRefs().subjects); n > 0 && p.bcRefs().subjects[n-1].what == vw {
						p.bcRefs().subjects[n-1].template = va.Template
					}
				}
				t.Variants = append(t.Variants, va)
			}
		},
		"share": func(v *yaml.Node) { t.Share = number(v, "test.share") },
		"pick_by": func(v *yaml.Node) {
			at["test.pick_by"] = v
			t.PickBy = strings.TrimSpace(p.str(v, "pick_by"))
		},
		"after": func(v *yaml.Node) {
			at["test.after"] = v
			if d, ok := p.duration(v, what+": after"); ok {
				t.After = d
			} else {
				reported["test.after"] = true
			}
		},
		"min_results": func(v *yaml.Node) {
			at["test.min_results"] = v
			m, err := strconv.Atoi(p.str(v, "min_results"))
			if err != nil || m < 1 {
				p.errorf(v, "%s: min_results is a whole number of people, at least 1", what)
				reported["test.min_results"] = true
				return
			}
			t.MinResults = m
		},
	}, nil)
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for _, k := range []string{"variants", "share", "pick_by", "after"} {
		if valueOf(n, k) == nil {
			p.errorf(n, "%s: missing %s", what, k)
		}
	}
	return t
}

// checkBroadcastRefs refuses references to segments the journey does not
// define, and compiles test variants' subject lines against their
// templates.
func (p *parser) checkBroadcastRefs(j *Journey) {
	if p.bc == nil {
		return
	}
	defined := map[string]bool{}
	for _, s := range j.Segments {
		defined[s.Name] = true
	}
	for i, n := range p.bc.segments {
		if defined[n.Value] {
			continue
		}
		msg := fmt.Sprintf("%s: no segment %q", p.bc.what[i], n.Value)
		if len(defined) == 0 {
			msg += " (none defined: add it under segments:)"
		} else {
			msg += fmt.Sprintf(" (defined: %s)", strings.Join(sorted(slices.Collect(maps.Keys(defined))), ", "))
			if s := suggest.Closest(n.Value, slices.Collect(maps.Keys(defined))); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
		}
		p.errorf(n, "%s", msg)
	}
	byName := map[string]templates.Template{}
	for _, t := range j.Templates {
		byName[t.Name] = t
	}
	for _, s := range p.bc.subjects {
		t, ok := byName[s.template]
		if !ok {
			continue // the missing template is reported by checkRefs
		}
		if err := campaigns.CheckSubject(t, s.node.Value); err != nil {
			var te *templates.Error
			if errors.As(err, &te) && te.Part == templates.PartSubject {
				pos := p.exprPos(s.node, max(te.Line, 1), max(te.Column, 1))
				p.errs = append(p.errs, &Error{File: p.file, Pos: pos, Msg: fmt.Sprintf("%s: subject: %s", s.what, te.Msg)})
				continue
			}
			p.errorf(s.node, "%s: subject: %v", s.what, err)
		}
	}
}

// FormatDuration writes a duration as the journey file does (ParseDuration
// reads it back): 0h, 48h, 3d.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0h"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}
