package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Population is a shop's customer list with its history, for the whole
// path a new user takes: Contacts people, about twenty events each over
// the last 400 days up to End, in the mix a small shop sees — browsers
// who never buy (some fill a cart), one-time buyers, regulars who order
// every few weeks and review, lapsed customers, people with a support
// question and with a complaint — most with a birthday and a time zone,
// some buying for a business. Contact i is the same every time (it is
// decided by hashing i), so the JSON lines and the CSV files describe the
// same people and events.
type Population struct {
	Contacts int
	End      time.Time
}

// persona kinds, by share of the population.
const (
	browser  = iota // 35%: pages and products; a third fill a cart
	oneTime         // 25%: one order in the last 200 days
	regular         // 15%: an order every few weeks, many review
	lapsed          // 13%: orders 150-400 days ago, nothing since
	question        // 7%: a customer with an open or closed ticket
	complain        // 5%: a customer with a complaint, some resolved
)

var zones = []string{"America/Los_Angeles", "America/New_York", "America/Chicago", "Europe/London", "Europe/Berlin", "Europe/Madrid", "Asia/Tokyo", "Australia/Sydney", "America/Sao_Paulo", "Asia/Kolkata"}
var firstNames = []string{"Ann", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hana", "Ivo", "June", "Kai", "Lea", "Max", "Nia", "Oto", "Pia"}

type popEvent struct {
	name  string
	at    time.Time
	props string // a JSON object, or "" for none
	// for CSV: the property columns
	path, sku string
	revenue   string
}

type popContact struct {
	user      string
	email     string
	firstName string
	timezone  string
	birthday  string // "" for none
	company   string // "" for none
	created   time.Time
	events    []popEvent
}

// contact decides contact i.
func (p *Population) contact(i int) popContact {
	h := mix(uint64(i) ^ 0xa5a5a5a5)
	next := func() uint64 { h = mix(h); return h }
	c := popContact{
		user:      "p" + strconv.Itoa(i),
		email:     "p" + strconv.Itoa(i) + "@example.com",
		firstName: firstNames[next()%uint64(len(firstNames))],
		timezone:  zones[next()%uint64(len(zones))],
	}
	if next()%10 < 8 {
		c.birthday = fmt.Sprintf("%04d-%02d-%02d", 1950+next()%55, 1+next()%12, 1+next()%28)
	}
	if next()%100 < 12 {
		c.company = "Company " + strconv.Itoa(int(next()%5000))
	}
	end := p.End
	day := 24 * time.Hour
	ago := func(maxDays uint64) time.Time {
		return end.Add(-time.Duration(next()%(maxDays*86400)) * time.Second)
	}
	add := func(name string, at time.Time) {
		e := popEvent{name: name, at: at}
		switch name {
		case "page_viewed":
			e.path = pages[next()%uint64(len(pages))]
			e.props = `{"path":"` + e.path + `"}`
		case "product_viewed", "cart_updated":
			e.sku = products[next()%uint64(len(products))]
			e.props = `{"sku":"` + e.sku + `"}`
		case "order_completed":
			cents := 1500 + int(next()%20000)
			e.revenue = string(appendCents(nil, cents))
			e.props = `{"revenue":` + e.revenue + `}`
		}
		c.events = append(c.events, e)
	}
	browse := func(n int, maxDays uint64) {
		for k := 0; k < n; k++ {
			if next()%3 == 0 {
				add("product_viewed", ago(maxDays))
			} else {
				add("page_viewed", ago(maxDays))
			}
		}
	}
	switch r := next() % 100; {
	case r < 35:
		browse(8+int(next()%16), 60)
		if next()%3 == 0 {
			add("cart_updated", ago(20))
		}
	case r < 60:
		browse(10+int(next()%12), 200)
		first := ago(200)
		add("cart_updated", first.Add(-time.Hour))
		add("order_completed", first)
	case r < 75:
		browse(8+int(next()%10), 365)
		for k, n := 0, 3+int(next()%6); k < n; k++ {
			at := end.Add(-time.Duration(k)*(30+time.Duration(next()%20))*day - time.Duration(next()%86400)*time.Second)
			add("cart_updated", at.Add(-2*time.Hour))
			add("order_completed", at)
		}
		if next()%2 == 0 {
			add("review_posted", ago(60))
		}
	case r < 88:
		browse(8+int(next()%10), 400)
		for k, n := 0, 1+int(next()%2); k < n; k++ {
			add("order_completed", end.Add(-time.Duration(150+next()%250)*day))
		}
	case r < 95:
		browse(10+int(next()%12), 90)
		add("support_ticket_opened", ago(20))
		if next()%2 == 0 {
			add("support_ticket_closed", end)
		}
	default:
		browse(10+int(next()%12), 200)
		add("order_completed", ago(90))
		add("complaint_opened", ago(30))
		if next()%3 == 0 {
			add("complaint_resolved", end)
		}
	}
	// The contact exists from its first event, and says who it is then.
	c.created = end
	for _, e := range c.events {
		if e.at.Before(c.created) {
			c.created = e.at
		}
	}
	c.created = c.created.Add(-time.Minute)
	return c
}

// PopulationFiles are the files of a population: JSON lines (an identify
// and the events of each contact), or CSV (contacts, then events).
type PopulationFiles struct {
	JSONL                  string
	ContactsCSV, EventsCSV string
	Lines                  int // lines of the JSON lines file: identifies and events
	Events                 int
}

// WriteFiles writes the population's JSON lines file and its two CSV
// files into dir.
func (p *Population) WriteFiles(dir string) (PopulationFiles, error) {
	f := PopulationFiles{
		JSONL:       dir + "/population.jsonl",
		ContactsCSV: dir + "/contacts.csv",
		EventsCSV:   dir + "/events.csv",
	}
	type out struct {
		f *os.File
		w *bufio.Writer
	}
	var outs [3]out
	for k, path := range []string{f.JSONL, f.ContactsCSV, f.EventsCSV} {
		fh, err := os.Create(path)
		if err != nil {
			return f, err
		}
		outs[k] = out{fh, bufio.NewWriterSize(fh, 1<<20)}
	}
	jl, cc, ec := outs[0].w, outs[1].w, outs[2].w
	cc.WriteString("userId,email,first_name,timezone,birthday,company\n")
	ec.WriteString("userId,event,timestamp,messageId,path,sku,revenue\n")
	var b []byte
	for i := 0; i < p.Contacts; i++ {
		c := p.contact(i)
		// identify
		b = append(b[:0], `{"type":"identify","userId":"`...)
		b = append(b, c.user...)
		b = append(b, `","messageId":"`...)
		b = append(b, c.user...)
		b = append(b, `-id","timestamp":"`...)
		b = c.created.UTC().AppendFormat(b, time.RFC3339)
		b = append(b, `","traits":{"email":"`...)
		b = append(b, c.email...)
		b = append(b, `","first_name":"`...)
		b = append(b, c.firstName...)
		b = append(b, `","timezone":"`...)
		b = append(b, c.timezone...)
		b = append(b, '"')
		if c.birthday != "" {
			b = append(b, `,"birthday":"`...)
			b = append(b, c.birthday...)
			b = append(b, '"')
		}
		if c.company != "" {
			b = append(b, `,"company":"`...)
			b = append(b, c.company...)
			b = append(b, '"')
		}
		b = append(b, "}}\n"...)
		jl.Write(b)
		f.Lines++
		fmt.Fprintf(cc, "%s,%s,%s,%s,%s,%s\n", c.user, c.email, c.firstName, c.timezone, c.birthday, c.company)
		for k, e := range c.events {
			mid := c.user + "-" + strconv.Itoa(k)
			b = append(b[:0], `{"type":"track","userId":"`...)
			b = append(b, c.user...)
			b = append(b, `","event":"`...)
			b = append(b, e.name...)
			b = append(b, `","messageId":"`...)
			b = append(b, mid...)
			b = append(b, `","timestamp":"`...)
			b = e.at.UTC().AppendFormat(b, time.RFC3339)
			b = append(b, '"')
			if e.props != "" {
				b = append(b, `,"properties":`...)
				b = append(b, e.props...)
			}
			b = append(b, "}\n"...)
			jl.Write(b)
			f.Lines++
			f.Events++
			fmt.Fprintf(ec, "%s,%s,%s,%s,%s,%s,%s\n", c.user, e.name, e.at.UTC().Format(time.RFC3339), mid, e.path, e.sku, e.revenue)
		}
	}
	for _, o := range outs {
		if err := o.w.Flush(); err != nil {
			return f, err
		}
		if err := o.f.Close(); err != nil {
			return f, err
		}
	}
	return f, nil
}
