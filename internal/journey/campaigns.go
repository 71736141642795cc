package journey

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/suggest"
	"github.com/waymark/waymark/rule"
)

// ParseDuration reads a delay or cooldown: a whole number and a unit (s, m,
// h, d, w, y = 365d), or a Go duration like 1h30m. Zero is allowed.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	unit := s[len(s)-1]
	if n, err := strconv.ParseUint(s[:len(s)-1], 10, 32); err == nil {
		per := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}[unit]
		if per > 0 {
			if n > uint64(100*365*24*time.Hour/per) {
				return 0, fmt.Errorf("%q is longer than 100 years", s)
			}
			return time.Duration(n) * per, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration: use a number and a unit, like 0h, 30m, 48h, 3d, 2w or 1y", s)
	}
	return d, nil
}

func (p *parser) duration(n *yaml.Node, what string) (time.Duration, bool) {
	s := p.str(n, what)
	if s == "" {
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil {
		p.errorf(n, "%s: %v", what, err)
		return 0, false
	}
	return d, true
}

// condition compiles a condition in place, reporting errors at its place.
func (p *parser) condition(n *yaml.Node, what string, enrolment bool) string {
	src := p.str(n, what)
	if strings.TrimSpace(src) == "" {
		if n.Kind == yaml.ScalarNode {
			p.errorf(n, "%s: empty condition", what)
		}
		return ""
	}
	if _, err := rule.Compile(src, rule.CompileOptions{AllowEnrolment: enrolment}); err != nil {
		p.exprError(n, what, err)
		return ""
	}
	return src
}

// namedList walks a list of mappings with a unique name each.
func (p *parser) namedList(n *yaml.Node, section string, each func(item *yaml.Node, what string)) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list", section)
		return
	}
	seen := map[string]int{}
	kind := strings.TrimSuffix(section, "s")
	for _, item := range n.Content {
		what := fmt.Sprintf("%s at line %d", kind, item.Line)
		if v := valueOf(item, "name"); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
			what = fmt.Sprintf("%s %q", kind, v.Value)
			if line := seen[v.Value]; line != 0 {
				p.errorf(v, "%s: the name is already used by the %s at line %d", what, kind, line)
			}
			seen[v.Value] = item.Line
		} else if item.Kind == yaml.MappingNode {
			p.errorf(item, "%s: missing name", what)
		}
		each(item, what)
	}
}

type stepRef struct {
	template, tone, offer *yaml.Node
	what                  string
}

func (p *parser) sequences(n *yaml.Node, j *Journey) {
	p.namedList(n, "sequences", func(sn *yaml.Node, what string) {
		s := campaigns.Sequence{}
		var triggerNode *yaml.Node
		cooldownSet := false
		p.mapping(sn, what, map[string]func(*yaml.Node){
			"name": func(v *yaml.Node) { s.Name = strings.TrimSpace(p.str(v, "name")) },
			"trigger": func(v *yaml.Node) {
				triggerNode = v
				given := 0
				p.mapping(v, what+": trigger", map[string]func(*yaml.Node){
					"enter_stage": func(x *yaml.Node) {
						given++
						if st, ok := p.stage(x, "enter_stage"); ok {
							s.Trigger = campaigns.Trigger{Kind: campaigns.OnEnterStage, Stage: st}
							s.Stage = st
						}
					},
					"event": func(x *yaml.Node) {
						given++
						if e := strings.TrimSpace(p.str(x, "event")); e != "" {
							s.Trigger = campaigns.Trigger{Kind: campaigns.OnEvent, Event: e}
						}
					},
					"when": func(x *yaml.Node) {
						given++
						if c := p.condition(x, what+": trigger when", false); c != "" {
							s.Trigger = campaigns.Trigger{Kind: campaigns.OnRule, When: c}
						}
					},
					"anniversary": func(x *yaml.Node) {
						// A date trigger: the day of a date trait's
						// anniversary, at most once a year.
						given++
						if t := strings.TrimSpace(p.str(x, "anniversary")); t != "" {
							s.Trigger = campaigns.Trigger{Kind: campaigns.OnRule, When: fmt.Sprintf("days_to_anniversary(%q) == 0", t)}
							if !cooldownSet {
								s.Cooldown = 360 * 24 * time.Hour
							}
						}
					},
				}, nil)
				if v.Kind == yaml.MappingNode && given != 1 {
					p.errorf(v, "%s: trigger: give exactly one of enter_stage, event, when or anniversary", what)
				}
			},
			"exit": func(v *yaml.Node) { s.Exit = p.condition(v, what+": exit", true) },
			"goal": func(v *yaml.Node) { s.Goal = p.condition(v, what+": goal", true) },
			"cooldown": func(v *yaml.Node) {
				if d, ok := p.duration(v, what+": cooldown"); ok {
					s.Cooldown, cooldownSet = d, true
				}
			},
			"segment": func(v *yaml.Node) { s.Segment = p.segmentRef(v, what) },
			"steps": func(v *yaml.Node) {
				if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
					p.errorf(v, "%s: steps must be a list of at least one {after, template}", what)
					return
				}
				for i, stn := range v.Content {
					var st campaigns.Step
					sw := fmt.Sprintf("%s, step %d", what, i+1)
					ref := stepRef{what: sw}
					afterSet := false
					p.mapping(stn, sw, map[string]func(*yaml.Node){
						"after": func(x *yaml.Node) {
							afterSet = true
							if d, ok := p.duration(x, sw+": after"); ok {
								st.After = d
							}
						},
						"template": func(x *yaml.Node) { ref.template = x; st.Template = strings.TrimSpace(p.str(x, "template")) },
						"tone":     func(x *yaml.Node) { ref.tone = x; st.Tone = strings.TrimSpace(p.str(x, "tone")) },
						"offer":    func(x *yaml.Node) { ref.offer = x; st.Offer = strings.TrimSpace(p.str(x, "offer")) },
						"when":     func(x *yaml.Node) { st.When = p.condition(x, sw+": when", true) },
					}, nil)
					if stn.Kind == yaml.MappingNode {
						if !afterSet {
							p.errorf(stn, "%s: missing after (the delay since the previous step, e.g. 0h or 48h)", sw)
						}
						if ref.template == nil {
							p.errorf(stn, "%s: missing template", sw)
						}
					}
					s.Steps = append(s.Steps, st)
					p.refs = append(p.refs, ref)
				}
			},
		}, nil)
		if sn.Kind != yaml.MappingNode {
			return
		}
		if triggerNode == nil {
			p.errorf(sn, "%s: missing trigger ({enter_stage: STAGE}, {event: NAME}, {when: CONDITION} or {anniversary: TRAIT})", what)
		}
		if s.Steps == nil && valueOf(sn, "steps") == nil {
			p.errorf(sn, "%s: missing steps", what)
		}
		j.Sequences = append(j.Sequences, s)
	})
}

func (p *parser) holds(n *yaml.Node, j *Journey) {
	p.namedConditions(n, "holds", "", false, func(name, when string) {
		j.Holds = append(j.Holds, campaigns.Hold{Name: name, When: when})
	})
}

// namedConditions reads a list of {name, when} (holds, segments): add gets
// each item's name and its condition, checked. missing is said after
// "missing when"; with strict, the name must be lower-case letters,
// digits, - and _.
func (p *parser) namedConditions(n *yaml.Node, section, missing string, strict bool, add func(name, when string)) {
	p.namedList(n, section, func(item *yaml.Node, what string) {
		var name, when string
		p.mapping(item, what, map[string]func(*yaml.Node){
			"name": func(v *yaml.Node) {
				name = strings.TrimSpace(p.str(v, "name"))
				if strict && name != "" && !campaigns.ValidName(name) {
					p.errorf(v, "%s: a name is lower-case letters, digits, - and _", what)
				}
			},
			"when": func(v *yaml.Node) { when = p.condition(v, what+": when", false) },
		}, nil)
		if item.Kind == yaml.MappingNode && valueOf(item, "when") == nil {
			p.errorf(item, "%s: missing when%s", what, missing)
		}
		add(name, when)
	})
}

func (p *parser) offers(n *yaml.Node, j *Journey) {
	p.namedList(n, "offers", func(on *yaml.Node, what string) {
		o := campaigns.Offer{Share: 1}
		var tmpl *yaml.Node
		p.mapping(on, what, map[string]func(*yaml.Node){
			"name": func(v *yaml.Node) { o.Name = strings.TrimSpace(p.str(v, "name")) },
			"when": func(v *yaml.Node) { o.When = p.condition(v, what+": when", false) },
			"share": func(v *yaml.Node) {
				f, err := strconv.ParseFloat(p.str(v, "share"), 64)
				if err != nil || f <= 0 || f > 1 {
					p.errorf(v, "%s: share must be a number above 0 and at most 1 (0.3 = 30%% of the eligible)", what)
					return
				}
				o.Share = f
			},
			"cooldown": func(v *yaml.Node) {
				if d, ok := p.duration(v, what+": cooldown"); ok {
					o.Cooldown = d
				}
			},
			"valid": func(v *yaml.Node) {
				if d, ok := p.duration(v, what+": valid"); ok {
					o.Valid = d
				}
			},
			"template": func(v *yaml.Node) { tmpl = v; o.Template = strings.TrimSpace(p.str(v, "template")) },
			"prefix": func(v *yaml.Node) {
				o.Prefix = p.str(v, "prefix")
				if !couponText(o.Prefix) {
					p.errorf(v, "%s: prefix: use letters, digits and -", what)
				}
			},
			"codes": func(v *yaml.Node) {
				if v.Kind != yaml.SequenceNode {
					p.errorf(v, "%s: codes must be a list of coupon codes", what)
					return
				}
				seen := map[string]bool{}
				for _, c := range v.Content {
					code := strings.TrimSpace(p.str(c, "code"))
					switch {
					case code == "":
					case !couponText(code):
						p.errorf(c, "%s: code %q: use letters, digits and -", what, code)
					case seen[code]:
						p.errorf(c, "%s: code %q is listed twice", what, code)
					default:
						seen[code] = true
						o.Codes = append(o.Codes, code)
					}
				}
			},
		}, nil)
		if on.Kind == yaml.MappingNode {
			if valueOf(on, "when") == nil {
				p.errorf(on, "%s: missing when (who is eligible)", what)
			}
			if tmpl == nil {
				p.errorf(on, "%s: missing template", what)
			} else {
				p.refs = append(p.refs, stepRef{template: tmpl, what: what})
			}
		}
		j.Offers = append(j.Offers, o)
	})
}

func couponText(s string) bool {
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return len(s) <= 64
}

func (p *parser) sending(n *yaml.Node, j *Journey) {
	s := campaigns.DefaultSettings()
	p.mapping(n, "sending", map[string]func(*yaml.Node){
		"frequency_cap": func(v *yaml.Node) {
			p.mapping(v, "sending: frequency_cap", map[string]func(*yaml.Node){
				"max": func(x *yaml.Node) {
					m, err := strconv.Atoi(p.str(x, "max"))
					if err != nil || m < 0 {
						p.errorf(x, "sending: frequency_cap: max must be a whole number (0 for no cap)")
						return
					}
					s.CapMax = m
				},
				"per": func(x *yaml.Node) {
					if d, ok := p.duration(x, "sending: frequency_cap: per"); ok && d > 0 {
						s.CapPer = d
					}
				},
			}, nil)
		},
		"quiet_hours": func(v *yaml.Node) {
			clock := func(x *yaml.Node, what string) int {
				t, err := time.Parse("15:04", p.str(x, what))
				if err != nil {
					p.errorf(x, "sending: quiet_hours: %s must be a time like 21:00", what)
					return 0
				}
				return t.Hour()*60 + t.Minute()
			}
			p.mapping(v, "sending: quiet_hours", map[string]func(*yaml.Node){
				"from": func(x *yaml.Node) { s.QuietStart = clock(x, "from") },
				"to":   func(x *yaml.Node) { s.QuietEnd = clock(x, "to") },
				"default_timezone": func(x *yaml.Node) {
					tz := p.str(x, "default_timezone")
					if _, err := time.LoadLocation(tz); err != nil || tz == "" || tz == "Local" {
						p.errorf(x, "sending: quiet_hours: unknown time zone %q (use an IANA name like Europe/Berlin)", tz)
						return
					}
					s.DefaultTimezone = tz
				},
			}, nil)
		},
		"hold_expiry": func(v *yaml.Node) {
			if d, ok := p.duration(v, "sending: hold_expiry"); ok {
				s.HoldExpiry = d
			}
		},
		"late_expiry": func(v *yaml.Node) {
			if d, ok := p.duration(v, "sending: late_expiry"); ok {
				s.LateExpiry = d
			}
		},
		"tracking": func(v *yaml.Node) {
			b, err := strconv.ParseBool(p.str(v, "tracking"))
			if err != nil {
				p.errorf(v, "sending: tracking must be true or false")
				return
			}
			s.Tracking = b
		},
	}, nil)
	j.Settings = s
}

// checkRefs refuses steps and offers that name a template, tone or offer
// the journey does not define.
func (p *parser) checkRefs(j *Journey) {
	tmpls := map[string]bool{}
	// A template refused for a mistake of its own is defined all the
	// same: the mistake is reported, a reference to it is not one.
	for name := range p.broken {
		tmpls[name] = true
	}
	tones := map[string]bool{}
	for _, t := range j.Templates {
		tmpls[t.Name] = true
		for tone := range t.Tones {
			tones[tone] = true
		}
	}
	for _, t := range j.Tones {
		tones[t.Tone] = true
	}
	offers := map[string]bool{}
	for _, o := range j.Offers {
		offers[o.Name] = true
	}
	names := func(m map[string]bool) string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		if len(out) == 0 {
			return "none defined"
		}
		return "defined: " + strings.Join(sorted(out), ", ")
	}
	if len(j.Tones) > 0 {
		declared := map[string]bool{}
		for _, t := range j.Tones {
			declared[t.Tone] = true
		}
		for _, v := range p.variants {
			if !declared[v.tone.Value] {
				p.errorf(v.tone, "%s: tone %q is not one the tones: section can choose (%s), so this variant would never be sent", v.what, v.tone.Value, names(declared))
			}
		}
	}
	for _, r := range p.refs {
		if r.template != nil && r.template.Value != "" && !tmpls[r.template.Value] {
			msg := fmt.Sprintf("%s: no template %q (%s)", r.what, r.template.Value, names(tmpls))
			if s := suggest.Closest(r.template.Value, slices.Collect(maps.Keys(tmpls))); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			p.errorf(r.template, "%s", msg)
		}
		if r.tone != nil && r.tone.Value != "" && !tones[r.tone.Value] {
			p.errorf(r.tone, "%s: no tone %q (%s)", r.what, r.tone.Value, names(tones))
		}
		if r.offer != nil && r.offer.Value != "" && !offers[r.offer.Value] {
			p.errorf(r.offer, "%s: no offer %q (%s)", r.what, r.offer.Value, names(offers))
		}
	}
}
