package journey

import (
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/campaigns"
)

// DESIGN.md's journey file, with the templates it names.
const designJourney = `rules:
  - name: engaged-visitor
    from: [awareness]
    to: consideration
    when: count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1
tones:
  - tone: empathetic
    when: count("support_ticket_opened", "14d") > 0
  - tone: friendly        # default: no condition
sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    exit: stage != "awareness"
    steps:
      - {after: 0h,  template: welcome}
      - {after: 48h, template: best-of-blog}
  - name: cart-reminder
    trigger: {event: cart_updated}
    goal: count("order_completed", "enrolment") > 0
    cooldown: 3d
    steps:
      - {after: 1h, template: cart-reminder}
      - {after: 24h, template: cart-last-call, tone: friendly}
  - name: win-back
    trigger: {when: days_since("order_completed") > 90}
    cooldown: 180d
    steps:
      - {after: 0h, template: we-miss-you}
holds:
  - name: open-complaint
    when: count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")
offers:
  - name: surprise-thank-you
    when: count("order_completed", "365d") >= 3
    share: 0.3
    cooldown: 180d
    template: surprise
templates:
  - {name: welcome, subject: Welcome, text: Hi}
  - {name: best-of-blog, subject: Our best, text: Read}
  - {name: cart-reminder, subject: Your cart, text: Still there}
  - {name: cart-last-call, subject: Last call, text: Going}
  - {name: we-miss-you, subject: We miss you, text: Come back}
  - {name: surprise, subject: A gift, text: "{{with .Offer}}{{.Code}}{{end}}"}
`

func TestParseDesignJourney(t *testing.T) {
	t.Parallel()
	j, err := Parse("journey.yaml", []byte(designJourney))
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Sequences) != 3 || len(j.Holds) != 1 || len(j.Offers) != 1 || len(j.Templates) != 6 {
		t.Fatalf("%d sequences, %d holds, %d offers, %d templates", len(j.Sequences), len(j.Holds), len(j.Offers), len(j.Templates))
	}
	cart := j.Sequences[1]
	if cart.Trigger.Kind != campaigns.OnEvent || cart.Trigger.Event != "cart_updated" || cart.Cooldown != 72*time.Hour ||
		cart.Steps[1].After != 24*time.Hour || cart.Steps[1].Tone != "friendly" || cart.Goal == "" {
		t.Fatalf("cart-reminder %+v", cart)
	}
	if w := j.Sequences[0]; w.Stage != "awareness" || w.Trigger.Kind != campaigns.OnEnterStage || w.Steps[0].After != 0 {
		t.Fatalf("welcome %+v", w)
	}
	if o := j.Offers[0]; o.Share != 0.3 || o.Cooldown != 180*24*time.Hour || o.Template != "surprise" {
		t.Fatalf("offer %+v", o)
	}
	for _, s := range j.Sequences {
		if _, err := campaigns.Compile(s); err != nil {
			t.Errorf("compiling %s: %v", s.Name, err)
		}
	}
}

func TestCampaignErrorsNamePlaces(t *testing.T) {
	t.Parallel()
	base := "templates:\n  - {name: t, subject: S, text: T}\n"
	tests := []struct {
		name, src string
		want      []string
	}{
		{"unknown template in a step", base + "sequences:\n  - name: s\n    trigger: {event: x}\n    steps:\n      - {after: 1h, template: nope}\n",
			[]string{`j.yaml:7:31: sequence "s", step 1: no template "nope" (defined: t)`}},
		{"unknown tone in a step", base + "sequences:\n  - name: s\n    trigger: {event: x}\n    steps:\n      - {after: 1h, template: t, tone: chirpy}\n",
			[]string{`j.yaml:7:40: sequence "s", step 1: no tone "chirpy"`}},
		{"enrolment window outside a sequence", base + "holds:\n  - name: h\n    when: count(\"x\", \"enrolment\") > 0\n",
			[]string{`j.yaml:5:`, `hold "h": when: `}},
		{"enrolment window in a goal is fine, bad duration", base + "sequences:\n  - name: s\n    trigger: {event: x}\n    goal: count(\"order_completed\", \"enrolment\") > 0\n    steps:\n      - {after: 1 hour, template: t}\n",
			[]string{`j.yaml:8:17: sequence "s", step 1: after: "1 hour" is not a duration`}},
		{"two triggers", base + "sequences:\n  - name: s\n    trigger: {event: x, enter_stage: decision}\n    steps:\n      - {after: 0h, template: t}\n",
			[]string{`give exactly one of enter_stage, event, when or anniversary`}},
		{"share out of range", base + "offers:\n  - {name: o, when: 'ever(\"x\")', share: 1.5, template: t}\n",
			[]string{`j.yaml:4:`, `share must be a number above 0 and at most 1`}},
		{"typo in a step key", base + "sequences:\n  - name: s\n    trigger: {event: x}\n    steps:\n      - {after: 0h, templat: t}\n",
			[]string{`unknown key "templat"`, `did you mean "template"?`, `missing template`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("j.yaml", []byte(tt.src))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors %q lack %q", err, w)
				}
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"0h": 0, "30m": 30 * time.Minute, "48h": 48 * time.Hour, "3d": 72 * time.Hour, "2w": 14 * 24 * time.Hour, "1y": 365 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1h", "3x", "h", "1000y"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestMisspeltToneVariantIsRefused(t *testing.T) {
	t.Parallel()
	src := "tones:\n  - tone: empathetic\n    when: ever(\"x\")\n  - tone: friendly\ntemplates:\n  - name: t\n    subject: S\n    text: T\n    tones:\n      empathic: {text: Sorry}\n"
	_, err := Parse("j.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), `j.yaml:10:7: template "t": tone "empathic" is not one the tones: section can choose (defined: empathetic, friendly)`) {
		t.Fatalf("err = %v", err)
	}
}
