package demo

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Persona is a kind of customer the simulation plays.
type Persona string

// The personas.
const (
	// Browser looks around, sometimes fills a cart, and never buys.
	Browser Persona = "browser"
	// OneTimeBuyer buys once (sometimes after a cart reminder) and may
	// write a review.
	OneTimeBuyer Persona = "one-time buyer"
	// Loyal buys again and again, and often reviews: an advocate.
	Loyal Persona = "loyal customer"
	// Lapsed bought early on and went quiet; some come back after the
	// win-back email.
	Lapsed Persona = "lapsed customer"
	// Question buys, then opens a support ticket that stays open for a
	// while (the empathetic voice).
	Question Persona = "customer with a question"
	// Complainer buys, then files a complaint (a hold: no marketing email
	// until it is resolved, and some never are).
	Complainer Persona = "customer with a complaint"
)

// Plural names the persona's people: "browsers", "customers with a
// complaint".
func (p Persona) Plural() string {
	if first, rest, ok := strings.Cut(string(p), " with "); ok {
		return first + "s with " + rest
	}
	return string(p) + "s"
}

// Personas in the order they are described.
var Personas = []Persona{Browser, OneTimeBuyer, Loyal, Lapsed, Question, Complainer}

// mix is the share of each persona in the population.
var mix = map[Persona]float64{Browser: 0.40, OneTimeBuyer: 0.22, Loyal: 0.13, Lapsed: 0.12, Question: 0.08, Complainer: 0.05}

// Event is one thing a simulated contact does, as sent to the Segment
// API.
type Event struct {
	At      time.Time
	Contact int    // index in Population.Contacts
	Type    string // identify, page, track
	Name    string // track: the event; page: the page's name
	Props   map[string]any
	Traits  map[string]any // identify
	ID      string         // messageId, unique and stable
	// UserID, if set, is the user id the event is sent under instead of
	// the contact's: a second sign-up of the same person.
	UserID string
}

// Contact is a simulated customer.
type Contact struct {
	UserID   string
	Email    string
	Persona  Persona
	Business bool
	SignedUp time.Time
}

// Population is the simulated customers and everything they will do,
// events in time order.
type Population struct {
	Contacts []Contact
	Events   []Event
}

// Generate builds n contacts whose activity spans [start, end), plus what
// they keep doing for tail after end (the demo goes on in real time). The
// same seed gives the same population.
func Generate(seed uint64, n int, start, end time.Time, tail time.Duration) (*Population, error) {
	span := end.Sub(start)
	if span < 150*24*time.Hour {
		return nil, fmt.Errorf("demo: %v of history is too short: lapsed customers need 120 days of silence after an order (use at least 150 days)", span.Round(time.Hour))
	}
	if n < len(Personas)*2 {
		return nil, fmt.Errorf("demo: %d contacts is too few for %d personas (use at least %d)", n, len(Personas), len(Personas)*2)
	}
	g := &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: start.UTC(), end: end.UTC(), stop: end.Add(tail).UTC(), pop: &Population{}}
	// Every persona is represented, in proportion, at least twice.
	counts := map[Persona]int{}
	total := 0
	for _, p := range Personas {
		counts[p] = max(2, int(float64(n)*mix[p]))
		total += counts[p]
	}
	counts[Browser] += n - total
	var order []Persona
	for _, p := range Personas {
		for range counts[p] {
			order = append(order, p)
		}
	}
	g.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i, p := range order {
		g.contact(i, p)
	}
	evs := g.pop.Events[:0]
	for _, e := range g.pop.Events {
		if e.At.Before(g.stop) {
			evs = append(evs, e)
		}
	}
	slices.SortStableFunc(evs, func(a, b Event) int { return a.At.Compare(b.At) })
	g.pop.Events = evs
	return g.pop, nil
}

type gen struct {
	rng               *rand.Rand
	start, end, stop  time.Time
	pop               *Population
	seq               int // events of the current contact
	cur               int
	business, company string
}

const day = 24 * time.Hour

var (
	firstNames = []string{"june", "sam", "maya", "theo", "priya", "lucas", "ines", "noah", "hana", "omar", "greta", "felix", "amara", "jonas", "lena", "mateo",
		"zoe", "kai", "nora", "eli", "sofia", "ravi", "clara", "hugo", "ada", "leo", "mira", "ivan", "yuki", "rosa", "finn", "alma"}
	lastNames = []string{"park", "okafor", "lindqvist", "moreau", "sharma", "silva", "garcia", "novak", "tanaka", "haddad", "berg", "fischer", "mensah",
		"keller", "rossi", "walsh", "nguyen", "brennan", "costa", "ward"}
	companies = []string{"Cedar Ridge Lodge", "Northfork Outfitters", "Basalt Coffee Co.", "Tidewater Sailing School", "Alder & Pine Offices",
		"Summit Trail Guides", "Larch Valley Inn", "Riverbend Scouts"}
	zones    = []string{"America/Los_Angeles", "America/Los_Angeles", "America/Los_Angeles", "America/Denver", "America/Chicago", "America/New_York", "America/New_York", "Europe/London", "Europe/Berlin", "Asia/Tokyo", ""}
	products = []string{"enamel-camp-mug", "cast-iron-skillet-10", "wool-throw-heavyweight", "waxed-canvas-tote", "linen-sheet-set", "trail-thermos", "camp-stove-compact", "hatchet-forged"}
	pages    = []string{"Home", "Best sellers", "Camp kitchen", "Home goods", "Journal: cast iron routine", "Journal: layering", "About us", "Shipping & returns"}
)

// uniform is a random instant in [a, b).
func (g *gen) uniform(a, b time.Time) time.Time {
	if !b.After(a) {
		return a
	}
	return a.Add(time.Duration(g.rng.Int64N(int64(b.Sub(a)))))
}

func (g *gen) dur(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(g.rng.Int64N(int64(hi-lo)))
}

func (g *gen) emit(at time.Time, typ, name string, props, traits map[string]any) {
	g.seq++
	g.pop.Events = append(g.pop.Events, Event{At: at.UTC().Truncate(time.Millisecond), Contact: g.cur, Type: typ, Name: name, Props: props, Traits: traits,
		ID: fmt.Sprintf("sim-%d-%d", g.cur, g.seq)})
}

func (g *gen) track(at time.Time, name string, props map[string]any) {
	g.emit(at, "track", name, props, nil)
}

// browse is a visit of a few pages; it returns when it ends.
func (g *gen) browse(at time.Time, n int) time.Time {
	for range n {
		p := pages[g.rng.IntN(len(pages))]
		g.emit(at, "page", p, map[string]any{"path": "/" + strings.ToLower(strings.ReplaceAll(p, " ", "-"))}, nil)
		at = at.Add(g.dur(30*time.Second, 4*time.Minute))
	}
	return at
}

// shop looks at products and fills a cart; it returns when that is done
// and the cart's value.
func (g *gen) shop(at time.Time) (time.Time, float64) {
	var value float64
	for range 2 + g.rng.IntN(3) {
		p := products[g.rng.IntN(len(products))]
		g.track(at, "product_viewed", map[string]any{"product_id": p})
		at = at.Add(g.dur(20*time.Second, 3*time.Minute))
	}
	value = float64(18 + g.rng.IntN(180))
	g.track(at, "cart_updated", map[string]any{"value": value, "items": 1 + g.rng.IntN(3)})
	return at.Add(g.dur(time.Minute, 5*time.Minute)), value
}

// order completes an order; it returns when.
func (g *gen) order(at time.Time, value float64) time.Time {
	g.track(at, "order_completed", map[string]any{"revenue": value, "currency": "USD", "order_id": fmt.Sprintf("FW-%d-%d", g.cur, g.seq)})
	return at
}

// buy is a visit that ends in an order, now or (after a cart reminder)
// a few days later; it returns the order's time.
func (g *gen) buy(at time.Time) time.Time {
	at = g.browse(at, 1+g.rng.IntN(2))
	at, value := g.shop(at)
	if g.rng.Float64() < 0.4 {
		// Came back to the cart after a reminder or two.
		at = at.Add(g.dur(3*time.Hour, 3*day))
		at = g.browse(at, 1)
	}
	return g.order(at.Add(g.dur(2*time.Minute, 20*time.Minute)), value)
}

// signUp identifies the contact with its traits.
func (g *gen) signUp(i int, p Persona, at time.Time) {
	first := firstNames[g.rng.IntN(len(firstNames))]
	last := lastNames[g.rng.IntN(len(lastNames))]
	c := Contact{UserID: fmt.Sprintf("cust-%05d", i+1), Email: fmt.Sprintf("%s.%s.%d@example.com", first, last, i+1), Persona: p, SignedUp: at}
	traits := map[string]any{"email": c.Email, "first_name": first, "last_name": last, "signed_up_at": at.Format("2006-01-02"), "persona": string(p)}
	if z := zones[g.rng.IntN(len(zones))]; z != "" {
		traits["timezone"] = z
	}
	if g.rng.Float64() < 0.7 {
		b := time.Date(1950+g.rng.IntN(55), time.January, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, g.rng.IntN(365))
		traits["birthday"] = b.Format("2006-01-02")
	}
	if g.rng.Float64() < 0.12 {
		c.Business = true
		traits["company"] = companies[g.rng.IntN(len(companies))]
		traits["plan"] = "business"
	} else {
		traits["plan"] = "personal"
	}
	g.pop.Contacts = append(g.pop.Contacts, c)
	g.emit(at, "identify", "", nil, traits)
}

// contact generates one contact's life.
func (g *gen) contact(i int, p Persona) {
	g.cur, g.seq = i, 0
	span := g.end.Sub(g.start)
	frac := func(f float64) time.Time { return g.start.Add(time.Duration(f * float64(span))) }
	var signup time.Time
	switch p {
	case Loyal:
		signup = g.uniform(g.start, frac(0.35))
	case Lapsed:
		signup = g.uniform(g.start, frac(0.12))
	case Browser:
		signup = g.uniform(g.start, g.stop)
	default:
		signup = g.uniform(g.start, g.end.Add(-5*day))
	}
	g.signUp(i, p, signup)
	at := g.browse(signup.Add(g.dur(time.Minute, 10*time.Minute)), 1)

	switch p {
	case Browser:
		// Some look once; some come back enough to be interested; some
		// fill a cart and never buy.
		visits := g.rng.IntN(5)
		for range visits {
			at = g.browse(at.Add(g.dur(6*time.Hour, 5*day)), 1+g.rng.IntN(2))
		}
		if g.rng.Float64() < 0.35 {
			at = g.browse(at.Add(g.dur(time.Hour, 4*day)), 1)
			g.shop(at)
		}
		if g.rng.Float64() < 0.1 {
			// Signs up again, as a guest with the address in capitals:
			// a second contact with the same address, which must not
			// get the same email twice.
			c := g.pop.Contacts[i]
			g.emit(at.Add(g.dur(time.Hour, 3*day)), "identify", "", nil, map[string]any{"email": strings.ToUpper(c.Email), "plan": "personal"})
			g.pop.Events[len(g.pop.Events)-1].UserID = fmt.Sprintf("guest-%05d", i+1)
		}
	case OneTimeBuyer, Question, Complainer:
		for range g.rng.IntN(3) {
			at = g.browse(at.Add(g.dur(6*time.Hour, 4*day)), 1+g.rng.IntN(2))
		}
		ordered := g.buy(at.Add(g.dur(time.Hour, 6*day)))
		switch p {
		case Question:
			opened := ordered.Add(g.dur(day, 4*day))
			g.track(opened, "support_ticket_opened", map[string]any{"topic": "sizing and care"})
			if g.rng.Float64() < 0.8 {
				g.track(opened.Add(g.dur(12*day, 25*day)), "support_ticket_closed", nil)
			}
		case Complainer:
			opened := ordered.Add(g.dur(2*day, 6*day))
			g.track(opened, "complaint_opened", map[string]any{"reason": "arrived damaged"})
			g.track(opened, "support_ticket_opened", map[string]any{"topic": "complaint"})
			if g.rng.Float64() < 0.7 {
				closed := opened.Add(g.dur(5*day, 20*day))
				g.track(closed, "complaint_resolved", nil)
				g.track(closed, "support_ticket_closed", nil)
			}
		default:
			if g.rng.Float64() < 0.25 {
				g.track(ordered.Add(g.dur(8*day, 20*day)), "review_posted", map[string]any{"rating": 4 + g.rng.IntN(2)})
			}
		}
		// Now and then they look in again.
		for t := ordered.Add(g.dur(10*day, 60*day)); t.Before(g.stop); t = t.Add(g.dur(20*day, 90*day)) {
			g.browse(t, 1)
		}
	case Loyal:
		t := at.Add(g.dur(time.Hour, 5*day))
		n := 0
		for t.Before(g.stop) {
			o := g.buy(t)
			n++
			if n == 2 && g.rng.Float64() < 0.5 {
				g.track(o.Add(g.dur(5*day, 15*day)), "review_posted", map[string]any{"rating": 5})
			}
			t = o.Add(g.dur(12*day, 40*day))
		}
	case Lapsed:
		o := g.buy(at.Add(g.dur(time.Hour, 5*day)))
		if g.rng.Float64() < 0.4 {
			o = g.buy(o.Add(g.dur(5*day, 20*day)))
		}
		// Silence. A third of them come back some weeks after the win-back
		// email (sent when the last order is 120 days old).
		if g.rng.Float64() < 0.35 {
			g.buy(o.Add(121*day + g.dur(3*day, 30*day)))
		}
	}
}
