package demo

import (
	"testing"
	"time"
)

var (
	testEnd   = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	testStart = testEnd.Add(-180 * day)
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	p, err := Generate(3, 400, testStart, testEnd, 10*day)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Contacts) != 400 {
		t.Fatalf("%d contacts, want 400", len(p.Contacts))
	}
	per := map[Persona]int{}
	for _, c := range p.Contacts {
		per[c.Persona]++
	}
	for _, ps := range Personas {
		if per[ps] < 2 {
			t.Errorf("%d %s", per[ps], ps.Plural())
		}
	}
	// Events in time order, within the history and its tail, each with a
	// unique message id; a contact's first event is its sign-up.
	seen := map[string]bool{}
	first := map[int]string{}
	lastOrder := map[int]time.Time{}
	names := map[string]int{}
	for i, e := range p.Events {
		if i > 0 && e.At.Before(p.Events[i-1].At) {
			t.Fatalf("event %d at %s is before the one before it", i, e.At)
		}
		if e.At.Before(testStart) || !e.At.Before(testEnd.Add(10*day)) {
			t.Errorf("event %s at %s is outside the history", e.ID, e.At)
		}
		if seen[e.ID] {
			t.Errorf("message id %s twice", e.ID)
		}
		seen[e.ID] = true
		if _, ok := first[e.Contact]; !ok {
			first[e.Contact] = e.Type
		}
		names[e.Name]++
		if e.Name == "order_completed" && e.At.Before(testEnd) {
			lastOrder[e.Contact] = e.At
		}
	}
	for c, typ := range first {
		if typ != "identify" {
			t.Errorf("contact %d starts with a %s, not its sign-up", c, typ)
		}
	}
	for _, n := range []string{"order_completed", "cart_updated", "product_viewed", "support_ticket_opened", "support_ticket_closed", "complaint_opened", "complaint_resolved", "review_posted"} {
		if names[n] == 0 {
			t.Errorf("no %s event", n)
		}
	}
	// Lapsed customers give the win-back something to do: some have not
	// ordered for 120 days by the end of the history; browsers never buy.
	lapsed := 0
	for i, c := range p.Contacts {
		switch c.Persona {
		case Lapsed:
			if o, ok := lastOrder[i]; ok && testEnd.Sub(o) > 125*day {
				lapsed++
			}
		case Browser:
			if _, ok := lastOrder[i]; ok {
				t.Errorf("browser %s bought", c.UserID)
			}
		}
	}
	if lapsed == 0 {
		t.Errorf("no lapsed customer is 125 days past their last order")
	}
	// The same seed, the same population.
	q, _ := Generate(3, 400, testStart, testEnd, 10*day)
	if len(q.Events) != len(p.Events) || q.Events[len(q.Events)/2].ID != p.Events[len(p.Events)/2].ID || q.Contacts[7] != p.Contacts[7] {
		t.Errorf("the same seed gave a different population")
	}
}

func TestGenerateRefuses(t *testing.T) {
	t.Parallel()
	if _, err := Generate(1, 400, testEnd.Add(-100*day), testEnd, 0); err == nil {
		t.Errorf("100 days of history accepted")
	}
	if _, err := Generate(1, 5, testStart, testEnd, 0); err == nil {
		t.Errorf("5 contacts accepted")
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	c := NewClock(testStart)
	c.Set(testStart.Add(time.Hour))
	c.Set(testStart) // never back
	if got := c.Now(); !got.Equal(testStart.Add(time.Hour)) {
		t.Errorf("now = %s", got)
	}
	c.GoLive()
	if got := c.Now(); time.Since(got) > time.Minute || !c.Live() {
		t.Errorf("live clock at %s", got)
	}
}
