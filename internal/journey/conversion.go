package journey

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/waymark/waymark/internal/report"
)

// MaxConversionWindow is the longest window a conversion goal may credit
// an email within.
const MaxConversionWindow = 90 * 24 * time.Hour

// maxEventName is the longest event name ingestion takes.
const maxEventName = 200

// engagementEvents are the events Waymark records itself on its emails:
// none of them can be a conversion goal.
var engagementEvents = []string{"email_opened", "email_clicked", "email_opened_machine", "email_clicked_machine",
	"email_sent", "email_delivered", "email_bounced", "email_complained", "unsubscribed", "resubscribed"}

// conversion reads `conversion:`: the goal event (required), the
// property summed as revenue (none when left out) and the window after a
// person's open or click (report.DefaultGoal's when left out). A journey
// without the section has report.DefaultGoal.
func (p *parser) conversion(n *yaml.Node, j *Journey) {
	what := "conversion"
	g := report.DefaultGoal()
	p.mapping(n, what, map[string]func(*yaml.Node){
		"event": func(v *yaml.Node) {
			name, ok := p.text(v, what+": event")
			name = strings.TrimSpace(name)
			switch {
			case !ok:
			case name == "":
				p.errorf(v, "%s: event must name the event that means marketing worked, like order_completed", what)
			case len(name) > maxEventName:
				p.errorf(v, "%s: event is longer than %d characters", what, maxEventName)
			case slices.Contains(engagementEvents, name):
				p.errorf(v, "%s: event %q is one Waymark records about its own emails; name the event that means marketing worked, like order_completed", what, name)
			default:
				g.Event = name
			}
		},
		"value": func(v *yaml.Node) {
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				g.Value = "" // value: with nothing: no revenue
				return
			}
			name, ok := p.text(v, what+": value")
			if ok {
				g.Value = strings.TrimSpace(name)
				if g.Value == "" {
					p.errorf(v, "%s: value must name the event's property summed as revenue, like revenue (leave value out for conversions without revenue)", what)
				}
			}
		},
		"window": func(v *yaml.Node) {
			d, ok := p.duration(v, what+": window")
			switch {
			case !ok:
			case d <= 0:
				p.errorf(v, "%s: window must be longer than 0, like 5d or 12h", what)
			case d > MaxConversionWindow:
				p.errorf(v, "%s: window %s is longer than the most, %s", what, FormatDuration(d), FormatDuration(MaxConversionWindow))
			default:
				g.Window = d
			}
		},
	}, nil)
	if n.Kind != yaml.MappingNode {
		return
	}
	if valueOf(n, "event") == nil {
		p.errorf(n, "%s: missing event (the event that means marketing worked, like order_completed)", what)
	}
	if valueOf(n, "value") == nil {
		g.Value = "" // without value, conversions carry no revenue
	}
	j.Conversion = g
}

// DescribeGoal says a goal in words, as an apply reports it.
func DescribeGoal(g report.Goal) string {
	s := fmt.Sprintf("event %s", g.Event)
	if g.Value != "" {
		s += ", value " + g.Value
	} else {
		s += ", no value"
	}
	return s + ", window " + FormatDuration(g.Window)
}
