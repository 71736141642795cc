package journey

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

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
	p.namedList(n, "segments", func(sn *yaml.Node, what string) {
		var s campaigns.Segment
		p.mapping(sn, what, map[string]func(*yaml.Node){
			"name": func(v *yaml.Node) {
				s.Name = strings.TrimSpace(p.str(v, "name"))
				if s.Name != "" && !validName(s.Name) {
					p.errorf(v, "%s: a name is lower-case letters, digits, - and _", what)
				}
			},
			"when": func(v *yaml.Node) { s.When = p.condition(v, what+": when", false) },
		}, nil)
		if sn.Kind == yaml.MappingNode && valueOf(sn, "when") == nil {
			p.errorf(sn, "%s: missing when (who is in the segment)", what)
		}
		j.Segments = append(j.Segments, s)
	})
}

func (p *parser) broadcasts(n *yaml.Node, j *Journey) {
	p.namedList(n, "broadcasts", func(bn *yaml.Node, what string) {
		b := campaigns.Broadcast{}
		var tmpl *yaml.Node
		start := len(p.bcRefs().subjects)
		p.mapping(bn, what, map[string]func(*yaml.Node){
			"name": func(v *yaml.Node) {
				b.Name = strings.TrimSpace(p.str(v, "name"))
				if b.Name != "" && !validName(b.Name) {
					p.errorf(v, "%s: a name is lower-case letters, digits, - and _", what)
				}
			},
			"audience": func(v *yaml.Node) {
				p.mapping(v, what+": audience", map[string]func(*yaml.Node){
					"stages": func(x *yaml.Node) {
						items := []*yaml.Node{x}
						if x.Kind == yaml.SequenceNode {
							items = x.Content
							if len(items) == 0 {
								p.errorf(x, "%s: audience: stages: name at least one stage, or leave stages out for every stage", what)
							}
						}
						for _, it := range items {
							if st, ok := p.stage(it, what+": audience: stages"); ok {
								if slices.Contains(b.Audience.Stages, st) {
									p.errorf(it, "%s: audience: stage %q is listed twice", what, st)
									continue
								}
								b.Audience.Stages = append(b.Audience.Stages, st)
							}
						}
					},
					"segment": func(x *yaml.Node) { b.Audience.Segment = p.segmentRef(x, what+": audience") },
				}, nil)
			},
			"template": func(v *yaml.Node) { tmpl = v; b.Template = strings.TrimSpace(p.str(v, "template")) },
			"send_at": func(v *yaml.Node) {
				s := p.str(v, "send_at")
				if _, _, err := campaigns.ParseSendAt(s); err != nil {
					p.errorf(v, "%s: send_at: %v", what, err)
					return
				}
				b.SendAt = strings.TrimSpace(s)
			},
			"schedule": func(v *yaml.Node) {
				s := p.str(v, "schedule")
				if _, _, err := campaigns.ParseSchedule(s); err != nil {
					p.errorf(v, "%s: %v", what, err)
					return
				}
				b.Schedule = strings.TrimSpace(s)
			},
			"throttle": func(v *yaml.Node) {
				f, err := strconv.ParseFloat(p.str(v, "throttle"), 64)
				if err != nil || f <= 0 || f > 1e6 {
					p.errorf(v, "%s: throttle is emails a second, a number above 0 (50 = at most 50 emails a second)", what)
					return
				}
				b.Throttle = f
			},
			"test": func(v *yaml.Node) { b.Test = p.abTest(v, what) },
		}, nil)
		if bn.Kind != yaml.MappingNode {
			return
		}
		if tmpl == nil {
			p.errorf(bn, "%s: missing template", what)
		} else {
			p.refs = append(p.refs, stepRef{template: tmpl, what: what})
		}
		if b.SendAt != "" && b.Schedule != "" {
			p.errorf(valueOf(bn, "schedule"), "%s: give send_at (once) or schedule (a cron spec), not both", what)
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

// abTest reads a broadcast's test: section.
func (p *parser) abTest(n *yaml.Node, what string) *campaigns.ABTest {
	what += ": test"
	t := &campaigns.ABTest{}
	var variants *yaml.Node
	p.mapping(n, what, map[string]func(*yaml.Node){
		"variants": func(v *yaml.Node) {
			variants = v
			if v.Kind != yaml.SequenceNode || len(v.Content) < 2 || len(v.Content) > campaigns.MaxVariants {
				p.errorf(v, "%s: variants is a list of 2 to %d templates, or of {subject: ...} to try subject lines", what, campaigns.MaxVariants)
				return
			}
			for i, vn := range v.Content {
				vw := fmt.Sprintf("%s: variant %d", what, i+1)
				var va campaigns.Variant
				if vn.Kind == yaml.ScalarNode {
					va.Template = strings.TrimSpace(p.str(vn, vw))
					p.refs = append(p.refs, stepRef{template: vn, what: vw})
				} else {
					var tn, sn *yaml.Node
					p.mapping(vn, vw, map[string]func(*yaml.Node){
						"template": func(x *yaml.Node) { tn = x; va.Template = strings.TrimSpace(p.str(x, "template")) },
						"subject":  func(x *yaml.Node) { sn = x; va.Subject = p.str(x, "subject") },
					}, nil)
					if tn != nil {
						p.refs = append(p.refs, stepRef{template: tn, what: vw})
					}
					if sn != nil {
						if strings.TrimSpace(va.Subject) == "" {
							p.errorf(sn, "%s: the subject is empty", vw)
						} else {
							p.bcRefs().subjects = append(p.bcRefs().subjects, subjectRef{node: sn, template: va.Template, what: vw})
						}
					}
					if vn.Kind == yaml.MappingNode && tn == nil && sn == nil {
						p.errorf(vn, "%s: give a template or a subject", vw)
					}
				}
				if slices.Contains(t.Variants, va) {
					p.errorf(vn, "%s: the same as an earlier variant", vw)
				}
				t.Variants = append(t.Variants, va)
			}
		},
		"share": func(v *yaml.Node) {
			f, err := strconv.ParseFloat(p.str(v, "share"), 64)
			if err != nil || f <= 0 || f >= 1 {
				p.errorf(v, "%s: share is the part of the audience the variants are tried on, above 0 and below 1 (0.2 = 20%%; the winner goes to the rest)", what)
				return
			}
			t.Share = f
		},
		"pick_by": func(v *yaml.Node) {
			switch s := p.str(v, "pick_by"); s {
			case campaigns.PickOpens, campaigns.PickClicks:
				t.PickBy = s
			case campaigns.PickConversions:
				p.errorf(v, "%s: pick_by: conversions is not available: Waymark does not track conversions yet, so there are none to compare; pick by opens or clicks", what)
			case "":
			default:
				p.errorf(v, "%s: pick_by is opens or clicks (people, not machines), not %q", what, s)
			}
		},
		"after": func(v *yaml.Node) {
			if d, ok := p.duration(v, what+": after"); ok {
				if d <= 0 {
					p.errorf(v, "%s: after is the wait before the winner is picked, more than 0 (4h)", what)
					return
				}
				t.After = d
			}
		},
		"min_results": func(v *yaml.Node) {
			m, err := strconv.Atoi(p.str(v, "min_results"))
			if err != nil || m < 1 {
				p.errorf(v, "%s: min_results is a whole number of people, at least 1", what)
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
	if variants == nil {
		return nil
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
		if _, err := templates.Compile(campaigns.WithSubject(t, s.node.Value)); err != nil {
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
