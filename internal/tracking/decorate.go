package tracking

import (
	"html"
	"net/mail"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/mailer"
)

// newlines turns CRLF and CR line ends into LF: built once (a Replacer is
// safe for concurrent use), not for every email (building one was 1.5% of
// the sender's CPU).
var newlines = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// Default link lifetimes.
const (
	DefaultLinkTTL  = 365 * 24 * time.Hour // unsubscribe and preferences links
	DefaultTrackTTL = 180 * 24 * time.Hour // open pixel and click redirects
)

// Decorator adds to a rendered marketing email what every one must carry:
// the RFC 8058 one-click unsubscribe headers, a footer with the sender's
// postal address and the unsubscribe and preferences links (in the text
// and HTML parts, after rendering, so no template can leave them out) and,
// when tracking is on, click redirects and the open pixel.
type Decorator struct {
	Signer *Signer
	// PublicURL is where NewHandler is served, e.g.
	// "https://mail.example.com" (WAYMARK_PUBLIC_URL); a trailing slash
	// is ignored.
	PublicURL string
	// PostalAddress is the sender's postal address (WAYMARK_POSTAL_ADDRESS),
	// one or more lines.
	PostalAddress string
	// From is the sender (WAYMARK_FROM): the List-Unsubscribe mailto:
	// goes to the message's From address, or to this one when the message
	// has none.
	From string
	// Now is the clock links expire from; nil means time.Now.
	Now func() time.Time
	// LinkTTL is how long unsubscribe and preferences links work
	// (DefaultLinkTTL if 0); TrackTTL the same for opens and clicks
	// (DefaultTrackTTL if 0).
	LinkTTL, TrackTTL time.Duration
}

func (d *Decorator) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return clock.Now()
}

func (d *Decorator) base() string { return strings.TrimRight(d.PublicURL, "/") }

func (d *Decorator) sign(k Kind, contactID, sendID int64, target string, now time.Time) string {
	ttl := d.LinkTTL
	if ttl <= 0 {
		ttl = DefaultLinkTTL
	}
	if k == Open || k == Click {
		ttl = d.TrackTTL
		if ttl <= 0 {
			ttl = DefaultTrackTTL
		}
	}
	return d.Signer.Sign(Token{Kind: k, ContactID: contactID, SendID: sendID, URL: target, Expires: now.Add(ttl)})
}

// Paths under PublicURL that NewHandler serves.
const (
	PathUnsubscribe = "/u/"
	PathPreferences = "/preferences/"
	PathOpen        = "/o/"
	PathClick       = "/c/"
)

// Links returns the unsubscribe and preferences URLs for a send, for
// templates ({{.UnsubscribeURL}}, {{.PreferencesURL}}).
func (d *Decorator) Links(contactID, sendID int64) (unsubscribe, preferences string) {
	now := d.now()
	return d.base() + PathUnsubscribe + d.sign(Unsubscribe, contactID, sendID, "", now),
		d.base() + PathPreferences + d.sign(Preferences, contactID, sendID, "", now)
}

// Decorate adds the List-Unsubscribe and List-Unsubscribe-Post headers
// (replacing any the message had), and the footer; with tracking, it
// rewrites the HTML part's http(s) links into click redirects (not
// mailto: or other schemes, and not Waymark's own links) and adds the
// open pixel. The text part's links are left as they are.
func (d *Decorator) Decorate(m *mailer.Message, contactID, sendID int64, tracking bool) {
	unsub, prefs := d.Links(contactID, sendID)
	d.DecorateLinks(m, contactID, sendID, tracking, unsub, prefs)
}

// DecorateLinks is Decorate with the send's unsubscribe and preferences
// URLs as Links returned them (for the template), so they are signed once
// per email.
func (d *Decorator) DecorateLinks(m *mailer.Message, contactID, sendID int64, tracking bool, unsub, prefs string) {
	now := d.now()
	base := d.base()
	if !strings.HasPrefix(unsub, base+PathUnsubscribe) || prefs == "" {
		unsub, prefs = d.Links(contactID, sendID)
	}
	unsubTok := strings.TrimPrefix(unsub, base+PathUnsubscribe)

	// Headers: exactly one of each.
	hs := m.Headers[:0:0]
	for _, h := range m.Headers {
		if strings.EqualFold(h[0], "List-Unsubscribe") || strings.EqualFold(h[0], "List-Unsubscribe-Post") {
			continue
		}
		hs = append(hs, h)
	}
	// RFC 8058: the https URI is what one-click POSTs; the mailto: is for
	// clients that only mail. It goes to the sender's own address with the
	// token in the subject, so whoever reads that mailbox can act on it
	// (POST /u/TOKEN); Waymark does not read mail.
	lu := "<" + unsub + ">"
	addr := mailtoAddress(m.From)
	if addr == "" {
		addr = mailtoAddress(d.From)
	}
	if addr != "" {
		lu += ", <mailto:" + addr + "?subject=unsubscribe%20" + unsubTok + ">"
	}
	m.Headers = append(hs, [2]string{"List-Unsubscribe", lu}, [2]string{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"})

	// Text footer. A template with a footer of its own (both links in
	// it) keeps it; only the postal address is added, so an email has
	// one footer.
	address := newlines.Replace(strings.TrimSpace(d.PostalAddress))
	var tf strings.Builder
	tf.WriteString(strings.TrimRight(m.Text, "\r\n"))
	if ownFooter(m.Text, unsub, prefs) {
		if address != "" {
			tf.WriteString("\n" + address)
		}
		tf.WriteString("\n")
	} else {
		tf.WriteString("\n\n-- \n")
		if address != "" {
			tf.WriteString(address + "\n")
		}
		tf.WriteString("Unsubscribe: " + unsub + "\n")
		tf.WriteString("Email preferences: " + prefs + "\n")
	}
	m.Text = tf.String()

	if m.HTML == "" {
		return
	}
	body := m.HTML
	if tracking {
		body = d.rewriteLinks(body, contactID, sendID, now)
	}
	var hf strings.Builder
	own := ownFooter(m.HTML, html.EscapeString(unsub), html.EscapeString(prefs))
	if !own || address != "" {
		hf.WriteString(`<div style="margin-top:24px;font-family:Arial,Helvetica,sans-serif;font-size:12px;line-height:18px;color:#6b7280">`)
		if address != "" {
			lines := strings.Split(address, "\n")
			for i, l := range lines {
				lines[i] = html.EscapeString(strings.TrimSpace(l))
			}
			hf.WriteString(strings.Join(lines, "<br>"))
			if !own {
				hf.WriteString("<br>")
			}
		}
		if !own {
			hf.WriteString(`<a href="` + html.EscapeString(prefs) + `" style="color:#6b7280">Email preferences</a> &middot; `)
			hf.WriteString(`<a href="` + html.EscapeString(unsub) + `" style="color:#6b7280">Unsubscribe</a>`)
		}
		hf.WriteString(`</div>`)
	}
	if tracking {
		hf.WriteString(openPixel(base + PathOpen + d.sign(Open, contactID, sendID, "", now)))
	}
	m.HTML = beforeBody(body, hf.String())
}

// openPixel is the open pixel: the background of a 1×1 cell (its
// background attribute, which Gmail, Outlook.com and Yahoo load, and its
// background-image, which Apple Mail and the rest load) and, for Outlook
// on Windows, which shows neither, a VML fill in a conditional comment.
// Not an <img>: spam filters score any <img> beside less than about 3,200
// bytes of text as image spam (SpamAssassin's HTML_IMAGE_ONLY_04…_32, up
// to 2.8 points with its local tests), which a one-pixel image would make
// of every short email.
func openPixel(url string) string {
	u := html.EscapeString(url)
	return `<table role="presentation" width="1" height="1" cellpadding="0" cellspacing="0" border="0" style="width:1px;height:1px"><tr>` +
		`<td width="1" height="1" background="` + u + `" style="background-image:url('` + u + `');width:1px;height:1px;font-size:1px;line-height:1px">` +
		`<!--[if mso]><v:rect xmlns:v="urn:schemas-microsoft-com:vml" fill="true" stroke="false" style="width:1px;height:1px"><v:fill type="tile" src="` + u + `"/></v:rect><![endif]-->` +
		`</td></tr></table>`
}

// ownFooter reports whether a part carries its own unsubscribe and
// preferences links (the template wrote a footer).
func ownFooter(part, unsub, prefs string) bool {
	return strings.Contains(part, unsub) && strings.Contains(part, prefs)
}

// mailtoAddress returns the address of from ("Name <addr>" or bare) when
// it can go into a mailto: URI as it is (RFC 6068: no character that would
// need percent-encoding), else "".
func mailtoAddress(from string) string {
	if from == "" {
		return ""
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return ""
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return ""
	}
	for i := 0; i < len(a.Address); i++ {
		c := a.Address[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(".-_+!$&'*=^`{|}~@", c) >= 0:
		default:
			return ""
		}
	}
	return a.Address
}

// beforeBody inserts s before the last </body>, or appends it.
func beforeBody(doc, s string) string {
	for i := len(doc) - len("</body"); i >= 0; i-- {
		if doc[i] != '<' || doc[i+1] != '/' || !strings.EqualFold(doc[i+2:i+6], "body") {
			continue
		}
		j := i + 6
		for j < len(doc) && isSpace(doc[j]) {
			j++
		}
		if j < len(doc) && doc[j] == '>' {
			return doc[:i] + s + doc[i:]
		}
	}
	return doc + s
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

// rewriteLinks turns the href of every <a> and <area> with an absolute
// http(s) target into a signed click redirect to that target. Waymark's
// own links (unsubscribe, preferences...) stay as they are.
func (d *Decorator) rewriteLinks(doc string, contactID, sendID int64, now time.Time) string {
	base := d.base()
	own := [...]string{base + PathUnsubscribe, base + PathPreferences, base + PathOpen, base + PathClick}
	var out strings.Builder
	last := 0 // doc[:last] is in out
	for i := 0; ; {
		j := strings.IndexByte(doc[i:], '<')
		if j < 0 {
			break
		}
		i += j + 1
		vs, ve, ok := linkHref(doc, i)
		if !ok {
			continue
		}
		raw := doc[vs:ve]
		if raw != "" && (raw[0] == '"' || raw[0] == '\'') {
			raw = raw[1 : len(raw)-1]
		}
		target := strings.TrimSpace(html.UnescapeString(raw))
		if !linkable(target) || hasAnyPrefix(target, own[:]) {
			continue
		}
		if out.Len() == 0 {
			out.Grow(len(doc) + 1024)
		}
		out.WriteString(doc[last:vs])
		out.WriteByte('"')
		out.WriteString(html.EscapeString(base + PathClick + d.sign(Click, contactID, sendID, target, now)))
		out.WriteByte('"')
		last = ve
		i = ve
	}
	if last == 0 {
		return doc
	}
	out.WriteString(doc[last:])
	return out.String()
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// linkHref reads the tag starting at doc[i] (just after its '<'): for an
// <a> or <area> start tag with an href attribute, it returns the span of
// the attribute's value, quotes included. Attributes are read the way
// HTML does (names, optional "=" and a quoted or unquoted value), so an
// attribute like data-href or a value containing "href=" is not taken
// for it.
func linkHref(doc string, i int) (vs, ve int, ok bool) {
	n := i
	for n < len(doc) && ('a' <= doc[n]|0x20 && doc[n]|0x20 <= 'z') {
		n++
	}
	if name := doc[i:n]; !strings.EqualFold(name, "a") && !strings.EqualFold(name, "area") {
		return 0, 0, false
	}
	if n >= len(doc) || !isSpace(doc[n]) {
		return 0, 0, false
	}
	for p := n; p < len(doc); {
		for p < len(doc) && (isSpace(doc[p]) || doc[p] == '/') {
			p++
		}
		if p >= len(doc) || doc[p] == '>' {
			return 0, 0, false
		}
		as := p
		for p < len(doc) && !isSpace(doc[p]) && doc[p] != '=' && doc[p] != '>' && doc[p] != '/' {
			p++
		}
		attr := doc[as:p]
		for p < len(doc) && isSpace(doc[p]) {
			p++
		}
		if p >= len(doc) || doc[p] != '=' {
			continue // an attribute without a value
		}
		p++
		for p < len(doc) && isSpace(doc[p]) {
			p++
		}
		if p >= len(doc) {
			return 0, 0, false
		}
		vs = p
		switch q := doc[p]; q {
		case '"', '\'':
			e := strings.IndexByte(doc[p+1:], q)
			if e < 0 {
				return 0, 0, false
			}
			p += e + 2
		default:
			for p < len(doc) && !isSpace(doc[p]) && doc[p] != '>' {
				p++
			}
		}
		if strings.EqualFold(attr, "href") {
			return vs, p, true
		}
	}
	return 0, 0, false
}
