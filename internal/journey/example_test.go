package journey

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// The example journey shipped in examples/ must load, and say what its
// comments say.

const examplePath = "../../examples/journey.yaml"

func loadExample(t *testing.T) *Journey {
	t.Helper()
	j, err := Load(examplePath)
	if err != nil {
		t.Fatalf("loading %s:\n%v", examplePath, err)
	}
	return j
}

func TestExampleJourneyLoads(t *testing.T) {
	t.Parallel()
	j := loadExample(t)
	if len(j.Rules) != 5 || len(j.Programs) != 5 {
		t.Errorf("got %d rules, %d programs; want 5", len(j.Rules), len(j.Programs))
	}
	var tones []string
	for _, tr := range j.Tones {
		tones = append(tones, tr.Tone)
	}
	if want := []string{"empathetic", "formal", "celebratory", "friendly"}; !slices.Equal(tones, want) {
		t.Errorf("tones = %v, want %v", tones, want)
	}
	if len(j.TonePrograms) != 3 || j.Tones[3].When != "" {
		t.Errorf("got %d tone conditions and default %+v; want 3 and no condition", len(j.TonePrograms), j.Tones[3])
	}
	var names []string
	for _, tp := range j.Templates {
		names = append(names, tp.Name)
	}
	want := []string{"welcome", "best-of-blog", "cart-reminder", "cart-last-call", "first-purchase-thanks", "we-miss-you", "surprise",
		"review-request", "refer-a-friend", "birthday", "come-back", "journal"}
	if !slices.Equal(names, want) {
		t.Errorf("templates = %v, want %v", names, want)
	}
}

func TestExampleTemplatesRenderInEveryTone(t *testing.T) {
	t.Parallel()
	j := loadExample(t)
	declared := map[string]bool{}
	for _, tr := range j.Tones {
		declared[tr.Tone] = true
	}
	celebratory := map[string]bool{"welcome": true, "first-purchase-thanks": true, "surprise": true}
	html := 0
	for _, tp := range j.Templates {
		t.Run(tp.Name, func(t *testing.T) {
			t.Parallel()
			for tone := range tp.Tones {
				if !declared[tone] {
					t.Errorf("variant %q is not a tone of the journey, so it would never be used", tone)
				}
			}
			for _, tone := range []string{"formal", "empathetic"} {
				if _, ok := tp.Tones[tone]; !ok {
					t.Errorf("no %s variant", tone)
				}
			}
			if _, ok := tp.Tones["celebratory"]; celebratory[tp.Name] && !ok {
				t.Errorf("no celebratory variant")
			}
			c, err := templates.Compile(tp)
			if err != nil {
				t.Fatal(err)
			}
			base := render(t, c, "", sampleContact())
			for _, tone := range []string{"friendly", "formal", "empathetic", "celebratory"} {
				for i, d := range []*templates.Data{sampleContact(), businessContact(), noNameContact()} {
					r := render(t, c, tone, d)
					if tone == "friendly" && i == 0 && r != base {
						t.Errorf("friendly differs from the base copy")
					}
					checkRendered(t, tone, d, []string{"June", "Sam", "there"}[i], r, tp.Base.HTML != "")
				}
				if _, ok := tp.Tones[tone]; !ok || tone == "friendly" {
					continue
				}
				// A variant must rewrite every part the base has: a tone
				// that changed the text but kept the base HTML would speak
				// in two voices in one email.
				r := render(t, c, tone, sampleContact())
				if r.Subject == base.Subject {
					t.Errorf("%s: same subject as the base: %q", tone, r.Subject)
				}
				if r.Text == base.Text {
					t.Errorf("%s: same text as the base", tone)
				}
				if base.HTML != "" && r.HTML == base.HTML {
					t.Errorf("%s: same HTML as the base", tone)
				}
			}
		})
		if tp.Base.HTML != "" {
			html++
		}
	}
	if html < 5 {
		t.Errorf("%d templates have HTML, want most of the 7", html)
	}
}

func TestExampleOffer(t *testing.T) {
	t.Parallel()
	j := loadExample(t)
	c := compileNamed(t, j, "surprise")
	expires := time.Date(2031, time.July, 4, 23, 0, 0, 0, time.UTC)
	for _, tone := range []string{"friendly", "formal", "empathetic", "celebratory"} {
		d := sampleContact()
		d.Offer = &templates.Offer{Name: "surprise-thank-you", Code: "FERN-8K2M", ExpiresAt: expires}
		r := render(t, c, tone, d)
		for _, part := range []string{r.Text, r.HTML} {
			if !strings.Contains(part, "FERN-8K2M") || !strings.Contains(part, "July 4, 2031") {
				t.Errorf("%s: the code or its expiry is missing:\n%s", tone, part)
			}
		}
		d.Offer = nil
		r = render(t, c, tone, d)
		if strings.Contains(r.Text, "code") || strings.Contains(r.HTML, "YOUR CODE") {
			t.Errorf("%s: without an offer the email still talks about a code:\n%s", tone, r.Text)
		}
	}
	// The win-back mentions an offer when the step gives one, except in
	// the empathetic voice.
	c = compileNamed(t, j, "we-miss-you")
	d := sampleContact()
	d.Offer = &templates.Offer{Code: "COMEBACK-31", ExpiresAt: expires}
	if r := render(t, c, "friendly", d); !strings.Contains(r.Text, "COMEBACK-31") {
		t.Errorf("friendly win-back without its code:\n%s", r.Text)
	}
	if r := render(t, c, "empathetic", d); strings.Contains(r.Text, "COMEBACK-31") {
		t.Errorf("empathetic win-back pushes the code:\n%s", r.Text)
	}
}

func TestExampleBusinessBuyerNamed(t *testing.T) {
	t.Parallel()
	j := loadExample(t)
	c := compileNamed(t, j, "welcome")
	r := render(t, c, "formal", businessContact())
	if !strings.Contains(r.Text, "on behalf of Cedar Ridge Lodge") || !strings.Contains(r.HTML, "on behalf of Cedar Ridge Lodge") {
		t.Errorf("formal welcome does not name the company:\n%s", r.Text)
	}
	r = render(t, c, "formal", sampleContact())
	if strings.Contains(r.Text, "on behalf of") {
		t.Errorf("formal welcome names a company the contact has not:\n%s", r.Text)
	}
}

// history is a contact's events as (name, days ago).
type history []struct {
	name    string
	daysAgo float64
}

var exampleNow = time.Date(2025, time.June, 2, 9, 0, 0, 0, time.UTC)

// facts builds what the rules see for a contact with history h, computing
// every aggregate the programs need.
func facts(t *testing.T, stage rule.Stage, daysInStage float64, traits map[string]any, h history, progs ...*rule.Program) *rule.Facts {
	t.Helper()
	f := &rule.Facts{
		Now:            exampleNow,
		Stage:          stage,
		StageEnteredAt: exampleNow.Add(-time.Duration(daysInStage * 24 * float64(time.Hour))),
		Traits:         traits,
		Values:         map[rule.Aggregate]float64{},
	}
	for _, a := range rule.Needs(progs...) {
		v := 0.0
		switch a.Kind {
		case rule.AggCount:
			for _, e := range h {
				ago := time.Duration(e.daysAgo * 24 * float64(time.Hour))
				if e.name == a.Event && (a.Window.All || ago < a.Window.Dur) {
					v++
				}
			}
		case rule.AggEver:
			for _, e := range h {
				if e.name == a.Event {
					v = 1
				}
			}
		case rule.AggDaysSince:
			v = math.Inf(1)
			for _, e := range h {
				if e.name == a.Event {
					v = min(v, e.daysAgo)
				}
			}
		default:
			t.Fatalf("the test does not compute %s", a)
		}
		f.Values[a] = v
	}
	return f
}

func exampleRules(j *Journey) ([]lifecycle.Rule, []*rule.Program) {
	var rules []lifecycle.Rule
	var progs []*rule.Program
	for _, r := range j.Rules {
		rules = append(rules, lifecycle.Rule{Name: r.Name, Version: 1, From: r.From, To: r.To, When: j.Programs[r.Name]})
		progs = append(progs, j.Programs[r.Name])
	}
	return rules, progs
}

func TestExampleRulesSettle(t *testing.T) {
	t.Parallel()
	j := loadExample(t)
	rules, progs := exampleRules(j)
	tests := []struct {
		name  string
		stage rule.Stage
		h     history
		want  []string // rules applied, in order
	}{
		{"browsing", rule.Awareness, history{{"page_viewed", 1}, {"page_viewed", 2}, {"page_viewed", 3}}, []string{"engaged-visitor"}},
		{"just a look", rule.Awareness, history{{"page_viewed", 1}}, nil},
		{"straight to the cart", rule.Awareness, history{{"product_viewed", 0.1}, {"product_viewed", 0.1}, {"cart_updated", 0.1}}, []string{"shopping"}},
		{"bought on the first visit", rule.Awareness, history{{"order_completed", 0.1}}, []string{"first-purchase"}},
		{"browsed, carted, bought", rule.Consideration, history{{"product_viewed", 1}, {"product_viewed", 1}, {"cart_updated", 1}, {"order_completed", 0.5}}, []string{"shopping", "first-purchase"}},
		{"third order this year", rule.Retention, history{{"order_completed", 200}, {"order_completed", 90}, {"order_completed", 2}}, []string{"advocate"}},
		{"reviewed", rule.Retention, history{{"order_completed", 20}, {"review_posted", 3}}, []string{"advocate"}},
		{"lapsed customer", rule.Retention, history{{"order_completed", 150}}, []string{"lapsed"}},
		// Not promoted on the way out: lapsed is tried before advocate.
		{"lapsed reviewer", rule.Retention, history{{"order_completed", 150}, {"review_posted", 140}}, []string{"lapsed"}},
		// The settling quirk: the old orders must not send the lapsed
		// advocate straight back to retention.
		{"lapsed advocate", rule.Advocacy, history{{"order_completed", 400}, {"order_completed", 300}, {"order_completed", 130}, {"review_posted", 300}}, []string{"lapsed"}},
		{"lapsed advocate stays in decision", rule.Decision, history{{"order_completed", 400}, {"order_completed", 300}, {"order_completed", 130}, {"review_posted", 300}}, nil},
		{"lapsed advocate orders again", rule.Decision, history{{"order_completed", 300}, {"order_completed", 130}, {"review_posted", 300}, {"order_completed", 0.2}}, []string{"first-purchase", "advocate"}},
		{"recent customer", rule.Retention, history{{"order_completed", 30}}, nil},
	}
	for _, tt := range tests {
		moves, err := lifecycle.Settle(rules, facts(t, tt.stage, 10, nil, tt.h, progs...))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		var got []string
		for _, m := range moves {
			got = append(got, m.Rule)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: from %s, rules %v, want %v", tt.name, tt.stage, got, tt.want)
		}
		if len(moves) == 0 {
			continue
		}
		// Settled means settled: evaluating again from where the contact
		// landed moves it nowhere.
		again, err := lifecycle.Settle(rules, facts(t, moves[len(moves)-1].To, 0, nil, tt.h, progs...))
		if err != nil || len(again) != 0 {
			t.Errorf("%s: from %s it moves again: %+v, %v", tt.name, moves[len(moves)-1].To, again, err)
		}
	}
}

func TestExampleTonePicking(t *testing.T) {
	t.Parallel()
	j := loadExample(t)
	pick := func(stage rule.Stage, daysInStage float64, traits map[string]any, h history) string {
		f := facts(t, stage, daysInStage, traits, h, j.TonePrograms...)
		for i, p := range j.TonePrograms {
			ok, err := p.Eval(f)
			if err != nil {
				t.Fatalf("tone %s: %v", j.Tones[i].Tone, err)
			}
			if ok {
				return j.Tones[i].Tone
			}
		}
		return j.Tones[len(j.Tones)-1].Tone
	}
	openTicket := history{{"support_ticket_opened", 2}}
	closedTicket := history{{"support_ticket_opened", 9}, {"support_ticket_closed", 7}}
	business := map[string]any{"company": "Cedar Ridge Lodge"}
	tests := []struct {
		name        string
		stage       rule.Stage
		daysInStage float64
		traits      map[string]any
		h           history
		want        string
	}{
		{"anyone", rule.Consideration, 3, nil, nil, "friendly"},
		{"open ticket", rule.Retention, 3, nil, openTicket, "empathetic"},
		{"closed ticket", rule.Retention, 3, nil, closedTicket, "friendly"},
		{"open ticket beats business", rule.Retention, 3, business, openTicket, "empathetic"},
		{"company", rule.Decision, 3, business, nil, "formal"},
		{"business plan", rule.Decision, 3, map[string]any{"plan": "business"}, nil, "formal"},
		{"blank company", rule.Decision, 3, map[string]any{"company": "", "plan": "personal"}, nil, "friendly"},
		{"new advocate", rule.Advocacy, 2, nil, nil, "celebratory"},
		{"business advocate", rule.Advocacy, 2, business, nil, "formal"},
		{"settled advocate", rule.Advocacy, 40, nil, nil, "friendly"},
	}
	for _, tt := range tests {
		if got := pick(tt.stage, tt.daysInStage, tt.traits, tt.h); got != tt.want {
			t.Errorf("%s: tone %s, want %s", tt.name, got, tt.want)
		}
	}
}

func compileNamed(t *testing.T, j *Journey, name string) *templates.Compiled {
	t.Helper()
	for _, tp := range j.Templates {
		if tp.Name == name {
			c, err := templates.Compile(tp)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatalf("no template %q", name)
	return nil
}

func render(t *testing.T, c *templates.Compiled, tone string, d *templates.Data) templates.Rendered {
	t.Helper()
	r, err := c.Render(tone, d)
	if err != nil {
		t.Fatalf("%s, tone %q: %v", c.Name(), tone, err)
	}
	return r
}

// checkRendered checks what every email must have, whoever it is for.
func checkRendered(t *testing.T, tone string, d *templates.Data, name string, r templates.Rendered, wantHTML bool) {
	t.Helper()
	parts := map[string]string{"subject": r.Subject, "text": r.Text}
	if wantHTML {
		parts["html"] = r.HTML
		if !strings.Contains(r.HTML, "href=\""+d.UnsubscribeURL+"\"") || !strings.Contains(r.HTML, "href=\""+d.PreferencesURL+"\"") {
			t.Errorf("%s: the HTML lacks the unsubscribe or preferences link", tone)
		}
	} else if r.HTML != "" {
		t.Errorf("%s: a text-only email got HTML", tone)
	}
	if !strings.Contains(r.Text, d.UnsubscribeURL) || !strings.Contains(r.Text, d.PreferencesURL) {
		t.Errorf("%s: the text lacks the unsubscribe or preferences link", tone)
	}
	if !strings.Contains(r.Text, "Hi "+name+",") && !strings.Contains(r.Text, "Hello "+name+",") {
		t.Errorf("%s: the text does not greet %q:\n%s", tone, name, r.Text)
	}
	for part, s := range parts {
		for _, bad := range []string{"<no value>", "{{", "}}", "%!", "  ,", " ,"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s, %s: contains %q:\n%s", tone, part, bad, s)
			}
		}
	}
	if len(r.Subject) > 78 {
		t.Errorf("%s: subject is %d bytes long: %q", tone, len(r.Subject), r.Subject)
	}
}

func sampleContact() *templates.Data {
	return &templates.Data{
		Contact: templates.Contact{
			Email:  "june.park@example.com",
			Stage:  "retention",
			Traits: map[string]any{"first_name": "june", "plan": "personal"},
		},
		UnsubscribeURL: "https://fernwoodsupply.example/u/tok-123",
		PreferencesURL: "https://fernwoodsupply.example/p/tok-123",
	}
}

func businessContact() *templates.Data {
	d := sampleContact()
	d.Contact.Email = "sam@cedarridge.example"
	d.Contact.Traits = map[string]any{"name": "Sam Okafor", "company": "Cedar Ridge Lodge", "plan": "business"}
	return d
}

func noNameContact() *templates.Data {
	d := sampleContact()
	d.Contact.Email = "orders@example.net"
	d.Contact.Traits = nil
	return d
}
