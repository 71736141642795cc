package web_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/web"
)

// loopingLapsed makes the fixture's lapsed rule hold for whoever shopper
// moved (ann): shopper and lapsed would move her back and forth.
const loopingLapsed = `{"from": ["decision"], "to": "consideration", "when": "ever(\"cart_updated\")"}`

// The rule editor's dry run shows loops, sequences and offers; saving a
// rule that makes a loop is refused before anything is saved.
func TestRuleEditorRefusesLoops(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	var dry struct {
		Summary string
		Loops   []struct {
			Rules    []string
			Contacts int
			Examples []string
			Sentence string
		}
		Sequences []struct{}
		Offers    []struct{}
	}
	if resp := f.call(t, "POST", "/api/v1/rules/lapsed/dry-run", f.key, loopingLapsed, &dry); resp.StatusCode != 200 {
		t.Fatalf("dry run: %d", resp.StatusCode)
	}
	want := "rules shopper (consideration → decision) and lapsed (decision → consideration) would move 1 contact back and forth on every pass (e.g. ann@example.com)"
	if len(dry.Loops) != 1 || dry.Loops[0].Sentence != want || dry.Loops[0].Contacts != 1 {
		t.Fatalf("dry run loops %+v, want %q", dry.Loops, want)
	}
	if dry.Sequences == nil || dry.Offers == nil {
		t.Errorf("the dry run has no sequences or offers lists")
	}
	var e struct{ Error, Field string }
	if resp := f.call(t, "PUT", "/api/v1/rules/lapsed", f.key, loopingLapsed, &e); resp.StatusCode != http.StatusConflict || e.Field != "when" || !strings.Contains(e.Error, want) {
		t.Fatalf("save: %d %+v, want 409 naming when and the loop", resp.StatusCode, e)
	}
	var ru struct {
		Version int
		When    string
	}
	f.call(t, "GET", "/api/v1/rules/lapsed", f.key, "", &ru)
	if ru.Version != 1 || ru.When != `ever("cart_abandoned")` {
		t.Fatalf("the refused rule was saved: %+v", ru)
	}

	// The dashboard's editor refuses it too.
	c, csrf := login(t, f)
	code, body := status(t, c, "POST", f.srv.URL+"/dashboard/rules/lapsed", map[string][]string{
		"csrf": {csrf}, "action": {"save"}, "from": {"decision"}, "to": {"consideration"}, "when": {`ever("cart_updated")`}})
	if code != http.StatusConflict || !strings.Contains(body, `id="field-error">not saved: rules shopper (consideration → decision)`) || !strings.Contains(body, `id="dryrun-loops"`) {
		t.Fatalf("dashboard save: %d, want 409 with the loop:\n%s", code, body)
	}
}

// The dashboard: a contact the rules flip says so; event properties are
// escaped once; rules and steps count from 1.
func TestDashboardSaysItClearly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	ctx := context.Background()
	// A looping journey stored as it is (apply would refuse it).
	j, err := journey.Parse("loop.yaml", []byte(strings.Replace(testJourney, `when: 'ever("cart_abandoned")'`, `when: 'ever("cart_updated")'`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.ApplyJourney(ctx, j, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, 'faq', 'page', 'page_viewed', '{"title": "Shipping & returns"}', $2)`,
		f.bob, clock.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	c, _ := login(t, f)
	_, body := status(t, c, "GET", fmt.Sprintf("%s/dashboard/contacts/%d", f.srv.URL, f.ann), nil)
	if !strings.Contains(body, `id="flip">Flipping: rules`) || !strings.Contains(body, "lapsed (decision → consideration)") {
		t.Errorf("ann's page does not say she flips:\n%s", body)
	}
	_, body = status(t, c, "GET", fmt.Sprintf("%s/dashboard/contacts/%d", f.srv.URL, f.bob), nil)
	if strings.Contains(body, `id="flip"`) {
		t.Errorf("bob's page says he flips")
	}
	if !strings.Contains(body, "Shipping &amp; returns") || strings.Contains(body, `\u0026`) {
		t.Errorf("event properties escaped twice:\n%s", body)
	}
	_, body = status(t, c, "GET", f.srv.URL+"/dashboard/rules", nil)
	if !strings.Contains(body, `<td class="num">1</td><td><a href="/dashboard/rules/visitor">visitor</a>`) {
		t.Errorf("the rules page does not number the first rule 1:\n%s", body)
	}
	_, body = status(t, c, "GET", fmt.Sprintf("%s/dashboard/contacts/%d", f.srv.URL, f.ann), nil)
	if !strings.Contains(body, "welcome step 1") {
		t.Errorf("ann's first email is not step 1:\n%s", body)
	}
}

// The captured mail is searched and paged, not cut at 200.
func TestCapturedMailSearchAndPages(t *testing.T) {
	t.Parallel()
	now := clock.Now()
	var mails []web.Mail
	for i := 250; i >= 1; i-- {
		mails = append(mails, web.Mail{ID: strconv.Itoa(i), From: "shop@example.com", To: []string{fmt.Sprintf("c%d@example.com", i)}, Subject: fmt.Sprintf("Mail number %d", i), Date: now, Text: "hello"})
	}
	f := newFixture(t, web.Config{CapturedMail: func(context.Context) ([]web.Mail, error) { return mails, nil }})
	c, _ := login(t, f)
	_, body := status(t, c, "GET", f.srv.URL+"/dashboard/mail", nil)
	if !strings.Contains(body, "1–100 of 250") || !strings.Contains(body, `id="mail-next"`) {
		t.Errorf("first page does not say 1–100 of 250 with a next page:\n%s", body)
	}
	_, body = status(t, c, "GET", f.srv.URL+"/dashboard/mail?page=3", nil)
	if !strings.Contains(body, "201–250 of 250") || !strings.Contains(body, "c1@example.com") {
		t.Errorf("page 3 does not reach the oldest mail:\n%s", body)
	}
	_, body = status(t, c, "GET", f.srv.URL+"/dashboard/mail?q=C7%40example.com", nil)
	if !strings.Contains(body, "1–1 of 1 matching") || !strings.Contains(body, "Mail number 7<") {
		t.Errorf("search for c7@example.com:\n%s", body)
	}
	_, css := status(t, c, "GET", f.srv.URL+"/dashboard/static/style.css", nil)
	for _, want := range []string{"white-space: pre-wrap", "button {", "select,"} {
		if !strings.Contains(css, want) {
			t.Errorf("style.css lacks %q (long lines wrapped, form controls styled)", want)
		}
	}
}
