package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
)

const toneJourney = `rules:
  - name: advocate
    from: [awareness, consideration, decision, retention]
    to: advocacy
    when: ever("review_posted")
tones:
  - tone: empathetic
    when: count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")
  - tone: formal
    when: traits.company != nil && traits.company != ""
  - tone: celebratory
    when: stage == "advocacy" && days_in_stage < 14
  - tone: friendly
templates:
  - name: thanks
    subject: "Thanks, {{.Contact.FirstName | default \"there\"}}!"
    text: "Hi {{.Contact.FirstName | default \"there\"}}, thanks for shopping with us."
    html: "<p>Hi {{.Contact.FirstName | default \"there\"}}, thanks for shopping with us.</p>"
    tones:
      formal:
        subject: "Thank you for your order, {{.Contact.Traits.company}}"
        text: "Dear {{.Contact.FirstName}}, thank you for your order on behalf of {{.Contact.Traits.company}}."
        html: "<p>Dear {{.Contact.FirstName}}, thank you for your order on behalf of {{.Contact.Traits.company}}.</p>"
      empathetic:
        subject: "We're on it, {{.Contact.FirstName}}"
        text: "Hi {{.Contact.FirstName}}, we know something went wrong. Our team is on your ticket."
        html: "<p>Hi {{.Contact.FirstName}}, we know something went wrong. Our team is on your ticket.</p>"
      celebratory:
        subject: "You're a star, {{.Contact.FirstName}}!"
`

func TestPreviewChoosesToneForEachSituation(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	dir := t.TempDir()
	contacts := filepath.Join(dir, "contacts.csv")
	_ = os.WriteFile(contacts, []byte("userId,email,first_name,company\nann,ann@example.com,Ann,\nbo,bo@acme.example,Bo,Acme Corp\ncy,cy@example.com,Cy,\ndee,dee@example.com,Dee,\n"), 0o644)
	events := filepath.Join(dir, "events.jsonl")
	now := clock.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	old := clock.Now().Add(-60 * 24 * time.Hour).UTC().Format(time.RFC3339)
	_ = os.WriteFile(events, []byte(`{"type":"track","userId":"ann","event":"support_ticket_opened","timestamp":"`+now+`"}
{"type":"track","userId":"cy","event":"review_posted","timestamp":"`+now+`"}
{"type":"track","userId":"bo","event":"support_ticket_opened","timestamp":"`+old+`"}
`), 0o644)
	jf := filepath.Join(dir, "journey.yaml")
	_ = os.WriteFile(jf, []byte(toneJourney), 0o644)
	for _, args := range [][]string{{"import", contacts}, {"import", events}, {"apply", "-f", jf}, {"tick"}} {
		if _, errOut, err := runWaymark(t, url, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
	tests := []struct {
		contact, tone, reason, subject string
	}{
		{"ann", "empathetic", `tone rule 1 (empathetic)`, "We're on it, Ann"},
		{"bo@acme.example", "formal", `tone rule 2 (formal): traits.company != nil && traits.company != "", saw traits.company = Acme Corp`, "Thank you for your order, Acme Corp"},
		{"cy", "celebratory", `tone rule 3 (celebratory)`, "You're a star, Cy!"},
		{"dee", "friendly", "default tone (tone rule 4)", "Thanks, Dee!"},
	}
	for _, tt := range tests {
		out, errOut, err := runWaymark(t, url, "preview", "thanks", "--contact", tt.contact)
		if err != nil {
			t.Fatalf("preview for %s: %v\n%s", tt.contact, err, errOut)
		}
		for _, want := range []string{"tone:     " + tt.tone, "reason:   " + tt.reason, "subject:  " + tt.subject} {
			if !strings.Contains(out, want) {
				t.Errorf("preview for %s lacks %q:\n%s", tt.contact, want, out)
			}
		}
	}
	// The celebratory variant overrides only the subject: the text and
	// HTML are the base's.
	out, _, _ := runWaymark(t, url, "preview", "thanks", "--contact", "cy")
	if !strings.Contains(out, "<p>Hi Cy, thanks for shopping with us.</p>") {
		t.Errorf("celebratory preview:\n%s", out)
	}
	if _, _, err := runWaymark(t, url, "preview", "nope", "--contact", "ann"); err == nil || !strings.Contains(err.Error(), `no template "nope"`) {
		t.Errorf("unknown template: %v", err)
	}
}

// The shipped example journey applies, and the same template previewed for
// contacts in four situations comes out in four tones, each for its reason.
func TestExampleJourneyFourTones(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	dir := t.TempDir()
	day := func(d int) string {
		return clock.Now().Add(time.Duration(d) * 24 * time.Hour).UTC().Format(time.RFC3339)
	}
	contacts := filepath.Join(dir, "contacts.csv")
	_ = os.WriteFile(contacts, []byte("userId,email,first_name,company\nann,ann@example.com,Ann,\nbo,bo@acme.example,Bo,Acme Corp\ncy,cy@example.com,Cy,\ndee,dee@example.com,Dee,\n"), 0o644)
	events := filepath.Join(dir, "events.csv")
	_ = os.WriteFile(events, []byte("userId,event,timestamp,revenue\n"+
		"ann,support_ticket_opened,"+day(-2)+",\n"+
		"cy,order_completed,"+day(-200)+",40\ncy,order_completed,"+day(-100)+",40\ncy,order_completed,"+day(-3)+",40\n"+
		"dee,page_viewed,"+day(-1)+",\n"), 0o644)
	for _, args := range [][]string{{"import", contacts}, {"import", events}, {"apply", "-f", "../../examples/journey.yaml"}, {"tick"}} {
		if _, errOut, err := runWaymark(t, url, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
	want := map[string]string{"ann": "empathetic", "bo": "formal", "cy": "celebratory", "dee": "friendly"}
	subjects := map[string]bool{}
	for who, tone := range want {
		out, errOut, err := runWaymark(t, url, "preview", "welcome", "--contact", who)
		if err != nil {
			t.Fatalf("preview for %s: %v\n%s", who, err, errOut)
		}
		if !strings.Contains(out, "tone:     "+tone+"\n") {
			t.Errorf("%s: want tone %s:\n%s", who, tone, out)
		}
		subject := out[strings.Index(out, "subject:"):]
		subjects[subject[:strings.Index(subject, "\n")]] = true
	}
	if len(subjects) != 4 {
		t.Errorf("%d distinct subjects for four tones: %v", len(subjects), subjects)
	}
}
