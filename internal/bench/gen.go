// Package bench measures Waymark's ingestion against its performance
// targets: /v1/batch throughput, `waymark import` against PostgreSQL's own
// COPY, and /v1/track latency under an open-loop load. It generates
// realistic Segment traffic, drives a real server over HTTP, and reports
// figures; the `waymark-bench` command wires it to the real server and
// import command.
package bench

import (
	"strconv"
	"time"
)

// Gen generates a deterministic stream of Segment track events, as
// @segment/analytics-node sends them: a mix of page_viewed,
// product_viewed, cart_updated and order_completed (with revenue) from
// Users distinct users, each with a unique messageId, a few properties and
// the library context. Event i is the same every time, so the JSONL file
// for import and the rows for the bare COPY describe the same events.
type Gen struct {
	Users int       // distinct userIds; default 100,000
	Start time.Time // timestamp of event 0; events are 1 ms apart
	Run   string    // distinguishes the messageIds of different runs
}

// NewGen returns a generator of events for users distinct users starting
// at start.
func NewGen(users int, start time.Time, run string) *Gen {
	if users <= 0 {
		users = 100_000
	}
	return &Gen{Users: users, Start: start.UTC().Truncate(time.Millisecond), Run: run}
}

// mix is splitmix64: a cheap, well-spread hash of the event number.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Event is event i, decided but not yet encoded.
type Event struct {
	I     int
	User  int // 0 ≤ User < Users
	Name  string
	h     uint64
	Time  time.Time
	msgID [36]byte
}

var products = []string{"hiking-boots", "rain-jacket", "trail-socks", "day-pack", "water-bottle", "camp-stove", "headlamp", "sleeping-bag", "trekking-poles", "sun-hat"}
var pages = []string{"/", "/shop", "/shop/boots", "/shop/jackets", "/blog/packing-list", "/blog/trail-guide", "/about", "/help/returns", "/cart", "/account"}
var referrers = []string{"https://www.google.com/", "https://www.instagram.com/", "https://news.ycombinator.com/", "", "https://duckduckgo.com/"}

// Event decides event i.
func (g *Gen) Event(i int) Event {
	h := mix(uint64(i))
	e := Event{I: i, h: h, User: int(mix(h) % uint64(g.Users)), Time: g.Start.Add(time.Duration(i) * time.Millisecond)}
	switch r := h % 100; {
	case r < 45:
		e.Name = "page_viewed"
	case r < 75:
		e.Name = "product_viewed"
	case r < 93:
		e.Name = "cart_updated"
	default:
		e.Name = "order_completed"
	}
	// A UUID-shaped messageId, unique per (run, i).
	const hexd = "0123456789abcdef"
	a, b := mix(h^0x5bd1e995), mix(uint64(i)^uint64(len(g.Run))<<56^hashString(g.Run))
	j := 0
	for k := 0; k < 32; k++ {
		if k == 8 || k == 12 || k == 16 || k == 20 {
			e.msgID[j] = '-'
			j++
		}
		var nib uint64
		if k < 16 {
			nib = a >> (4 * k) & 0xf
		} else {
			nib = b >> (4 * (k - 16)) & 0xf
		}
		e.msgID[j] = hexd[nib]
		j++
	}
	// Make uniqueness certain rather than probable: the last 8 hex digits
	// carry i itself.
	for k := 0; k < 8; k++ {
		e.msgID[35-k] = hexd[(uint64(i)>>(4*k))&0xf]
	}
	return e
}

func hashString(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// MessageID is the event's messageId.
func (e *Event) MessageID() string { return string(e.msgID[:]) }

// UserID is the event's userId.
func (e *Event) UserID() string { return "user_" + strconv.Itoa(e.User) }

// AppendProperties appends the event's properties as a JSON object.
func (e *Event) AppendProperties(b []byte) []byte {
	h := e.h >> 8
	prod := products[h%uint64(len(products))]
	price := 5 + int(h>>8%19000)
	switch e.Name {
	case "page_viewed":
		p := pages[h%uint64(len(pages))]
		b = append(b, `{"path":"`...)
		b = append(b, p...)
		b = append(b, `","url":"https://shop.example.com`...)
		b = append(b, p...)
		b = append(b, `","title":"Example Outdoor Shop","referrer":"`...)
		b = append(b, referrers[(h>>16)%uint64(len(referrers))]...)
		b = append(b, `"}`...)
	case "product_viewed":
		b = append(b, `{"product_id":"`...)
		b = append(b, prod...)
		b = append(b, `","sku":"SKU-`...)
		b = strconv.AppendUint(b, h>>20%100000, 10)
		b = append(b, `","category":"outdoor","price":`...)
		b = appendCents(b, price)
		b = append(b, `,"currency":"EUR"}`...)
	case "cart_updated":
		qty := 1 + int(h>>24%4)
		b = append(b, `{"cart_id":"cart_`...)
		b = strconv.AppendInt(b, int64(e.User), 10)
		b = append(b, `","product_id":"`...)
		b = append(b, prod...)
		b = append(b, `","quantity":`...)
		b = strconv.AppendInt(b, int64(qty), 10)
		b = append(b, `,"cart_total":`...)
		b = appendCents(b, price*qty)
		b = append(b, `,"currency":"EUR"}`...)
	default: // order_completed
		items := 1 + int(h>>24%5)
		b = append(b, `{"order_id":"ord_`...)
		b = strconv.AppendInt(b, int64(e.I), 10)
		b = append(b, `","revenue":`...)
		b = appendCents(b, price*items)
		b = append(b, `,"currency":"EUR","items":`...)
		b = strconv.AppendInt(b, int64(items), 10)
		if h>>28%3 == 0 {
			b = append(b, `,"coupon":"SPRING10"`...)
		}
		b = append(b, '}')
	}
	return b
}

func appendCents(b []byte, cents int) []byte {
	b = strconv.AppendInt(b, int64(cents/100), 10)
	b = append(b, '.')
	c := cents % 100
	b = append(b, byte('0'+c/10), byte('0'+c%10))
	return b
}

// Context is the context analytics-node puts on every message.
const Context = `{"library":{"name":"@segment/analytics-node","version":"2.1.2"}}`

const tsLayout = "2006-01-02T15:04:05.000Z07:00" // JavaScript's toISOString

// AppendJSON appends the event as one Segment track entry, exactly as
// analytics-node puts it in a batch.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"type":"track","event":"`...)
	b = append(b, e.Name...)
	b = append(b, `","userId":"user_`...)
	b = strconv.AppendInt(b, int64(e.User), 10)
	b = append(b, `","properties":`...)
	b = e.AppendProperties(b)
	b = append(b, `,"context":`...)
	b = append(b, Context...)
	b = append(b, `,"_metadata":{"nodeVersion":"20.11.1","jsRuntime":"node"},"integrations":{},"messageId":"`...)
	b = append(b, e.msgID[:]...)
	b = append(b, `","timestamp":"`...)
	b = e.Time.AppendFormat(b, tsLayout)
	b = append(b, `"}`...)
	return b
}

// AppendBatch appends a /v1/batch body holding events [from, to).
func (g *Gen) AppendBatch(b []byte, from, to int, sentAt time.Time) []byte {
	b = append(b, `{"batch":[`...)
	for i := from; i < to; i++ {
		if i > from {
			b = append(b, ',')
		}
		e := g.Event(i)
		b = e.AppendJSON(b)
	}
	b = append(b, `],"sentAt":"`...)
	b = sentAt.UTC().AppendFormat(b, tsLayout)
	b = append(b, `"}`...)
	return b
}

// AppendCopyRow appends the row the events table would hold for the event,
// in COPY's text format: contact_id, message_id, kind, name, properties,
// context, occurred_at, received_at. The contact id is the user's number
// plus one.
func (e *Event) AppendCopyRow(b []byte, received time.Time) []byte {
	b = strconv.AppendInt(b, int64(e.User)+1, 10)
	b = append(b, '\t')
	b = append(b, e.msgID[:]...)
	b = append(b, "\ttrack\t"...)
	b = append(b, e.Name...)
	b = append(b, '\t')
	b = appendCopyText(b, e.AppendProperties(nil))
	b = append(b, '\t')
	b = appendCopyText(b, []byte(Context))
	b = append(b, '\t')
	b = e.Time.AppendFormat(b, "2006-01-02 15:04:05.000Z07:00")
	b = append(b, '\t')
	b = received.UTC().AppendFormat(b, "2006-01-02 15:04:05.000000Z07:00")
	b = append(b, '\n')
	return b
}

// appendCopyText escapes s for COPY's text format.
func appendCopyText(b, s []byte) []byte {
	for _, c := range s {
		switch c {
		case '\\':
			b = append(b, '\\', '\\')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}
