package web_test

import (
	"context"
	"fmt"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/web"
)

// A contact's journey shows its conversions: the API's timeline and the
// dashboard's contact page give each order with its value, the email it
// was credited to (Ann opened the welcome 19 and 18 minutes ago and
// ordered 5 minutes ago: the later open, 13 minutes before, while still in
// awareness: the fixture's sweep moved her after) and why; an order of
// Bob's, who got no email, is credited to none.
func TestContactJourneyShowsConversions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	ctx := context.Background()
	now := clock.Now().UTC()
	for _, o := range []struct {
		contact int64
		id      string
		props   string
	}{{f.ann, "ann-order", `{"revenue": "64.00"}`}, {f.bob, "bob-order", `{"revenue": 12.5}`}} {
		if _, err := f.pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, $2, 'track', 'order_completed', $3, $4)`,
			o.contact, o.id, o.props, now.Add(-5*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := f.st.AttributeConversions(ctx, now); err != nil || n != 2 {
		t.Fatalf("attributed %d (%v), want 2", n, err)
	}
	var sendID int64
	var lastOpen time.Time
	if err := f.pool.QueryRow(ctx, `SELECT (SELECT id FROM sends WHERE contact_id = $1), (SELECT max(occurred_at) FROM events WHERE contact_id = $1 AND name = 'email_opened')`, f.ann).Scan(&sendID, &lastOpen); err != nil {
		t.Fatal(err)
	}
	const annReason = "credited to welcome (sequence welcome, step 1): opened 13m before, the only email this contact opened or clicked as a person within 5d"
	var tl struct {
		Conversions []struct {
			MessageID string    `json:"message_id"`
			Event     string    `json:"event"`
			Value     float64   `json:"value"`
			Stage     string    `json:"stage"`
			SendID    int64     `json:"send_id"`
			Touch     string    `json:"touch"`
			TouchAt   time.Time `json:"touch_at"`
			Template  string    `json:"template"`
			Sequence  string    `json:"sequence"`
			Reason    string    `json:"reason"`
		}
	}
	f.call(t, "GET", fmt.Sprintf("/api/v1/contacts/%d/timeline", f.ann), f.key, "", &tl)
	if len(tl.Conversions) != 1 {
		t.Fatalf("ann's conversions %+v", tl.Conversions)
	}
	c := tl.Conversions[0]
	if c.MessageID != "ann-order" || c.Event != "order_completed" || c.Value != 64 || c.SendID != sendID || c.Touch != "opened" ||
		!c.TouchAt.Equal(lastOpen) || c.Stage != "awareness" || c.Template != "welcome" || c.Sequence != "welcome" || c.Reason != annReason {
		t.Errorf("ann's conversion %+v", c)
	}
	f.call(t, "GET", fmt.Sprintf("/api/v1/contacts/%d/timeline", f.carol), f.key, "", &tl)
	if tl.Conversions == nil || len(tl.Conversions) != 0 {
		t.Errorf("carol's conversions %+v, want an empty list", tl.Conversions)
	}

	hc, _ := login(t, f)
	_, body := status(t, hc, "GET", fmt.Sprintf("%s/dashboard/contacts/%d", f.srv.URL, f.ann), nil)
	body = html.UnescapeString(body)
	for _, want := range []string{`<dd id="n-conversions">1</dd>`, `<span class="tag">conversion</span> <strong>order_completed</strong> · 64.00`,
		`credited to <strong class="credited">welcome</strong> (welcome), opened`, annReason} {
		if !strings.Contains(body, want) {
			t.Errorf("ann's page lacks %q:\n%s", want, body)
		}
	}
	_, body = status(t, hc, "GET", fmt.Sprintf("%s/dashboard/contacts/%d", f.srv.URL, f.bob), nil)
	body = html.UnescapeString(body)
	for _, want := range []string{`· 12.50`, `<strong class="credited">not credited to an email</strong>`,
		"no email opened or clicked as a person within 5d before it: not credited to an email"} {
		if !strings.Contains(body, want) {
			t.Errorf("bob's page lacks %q:\n%s", want, body)
		}
	}
}
