package tracking

import (
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/mailer"
)

func newDecorator(t *testing.T) *Decorator {
	return &Decorator{
		Signer:        newSigner(t),
		PublicURL:     "https://mail.example.com/",
		PostalAddress: "Waymark Ltd\n1 Harbour Street, Bristol BS1 4AA",
		From:          "news@fallback.example",
		Now:           func() time.Time { return t0 },
	}
}

const tplHTML = `<html><body>
<p>Hi! <a href="https://shop.example.com/sale?a=1&amp;b=2">Sale</a>
<a class="x" href='http://blog.example.com/post'>Blog</a>
<a href="mailto:help@example.com">Mail us</a>
<a href="#top">Top</a>
<a href="{unsub}">Unsubscribe (template)</a>
<area shape="rect" href=https://map.example.com/>
</p>
</BODY></html>`

func message(t *testing.T, d *Decorator) *mailer.Message {
	unsub, _ := d.Links(42, 7)
	return &mailer.Message{
		ID: "42.7", From: "Waymark News <news@Brand.Example.COM>", To: "ann@example.com", Subject: "Hi",
		Text:    "Hello Ann\n",
		HTML:    strings.Replace(tplHTML, "{unsub}", unsub, 1),
		Headers: [][2]string{{"X-Waymark-Send", "7"}, {"list-unsubscribe", "<https://old.example/u>"}},
	}
}

func headerValues(m *mailer.Message, name string) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h[0], name) {
			out = append(out, h[1])
		}
	}
	return out
}

var listUnsub = regexp.MustCompile(`^<https://mail\.example\.com/u/([A-Za-z0-9_-]+)>, <mailto:news@Brand\.Example\.COM\?subject=unsubscribe%20([A-Za-z0-9_-]+)>$`)

func TestDecorateHeaders(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	m := message(t, d)
	d.Decorate(m, 42, 7, true)
	lu := headerValues(m, "List-Unsubscribe")
	if len(lu) != 1 {
		t.Fatalf("List-Unsubscribe headers: %q, want exactly one", lu)
	}
	mm := listUnsub.FindStringSubmatch(lu[0])
	if mm == nil {
		t.Fatalf("List-Unsubscribe = %q, want <https://mail.example.com/u/TOKEN>, <mailto:news@Brand.Example.COM?subject=unsubscribe%%20TOKEN>", lu[0])
	}
	if mm[1] != mm[2] {
		t.Errorf("the URL and mailto tokens differ: %q, %q", mm[1], mm[2])
	}
	tok, err := d.Signer.Verify(Unsubscribe, mm[1], t0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Token{Kind: Unsubscribe, ContactID: 42, SendID: 7, Expires: t0.Add(DefaultLinkTTL)}); tok != want {
		t.Errorf("unsubscribe token = %+v, want %+v", tok, want)
	}
	if p := headerValues(m, "List-Unsubscribe-Post"); len(p) != 1 || p[0] != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post headers = %q, want exactly [List-Unsubscribe=One-Click]", p)
	}
	if x := headerValues(m, "X-Waymark-Send"); len(x) != 1 || x[0] != "7" {
		t.Errorf("other headers lost: X-Waymark-Send = %q", x)
	}
}

func TestDecorateMailtoFallsBackToConfiguredFrom(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	m := &mailer.Message{Text: "x"}
	d.Decorate(m, 1, 2, false)
	if lu := headerValues(m, "List-Unsubscribe"); len(lu) != 1 || !strings.Contains(lu[0], ", <mailto:news@fallback.example?subject=unsubscribe%20") {
		t.Errorf("List-Unsubscribe = %q, want a mailto to news@fallback.example", lu)
	}
	// An address that would need escaping in a URI gets no mailto:; the
	// https link is enough for RFC 8058.
	d.From = `"odd one"@fallback.example`
	m = &mailer.Message{Text: "x", From: "News <news%x@brand.example>"}
	d.Decorate(m, 1, 2, false)
	if lu := headerValues(m, "List-Unsubscribe"); len(lu) != 1 || strings.Contains(lu[0], "mailto") || !strings.HasPrefix(lu[0], "<https://mail.example.com/u/") {
		t.Errorf("List-Unsubscribe = %q, want only the https link", lu)
	}
}

func TestDecorateFooter(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	m := message(t, d)
	d.Decorate(m, 42, 7, false)
	unsub, prefs := d.Links(42, 7)
	wantText := "Hello Ann\n\n-- \nWaymark Ltd\n1 Harbour Street, Bristol BS1 4AA\nUnsubscribe: " + unsub + "\nEmail preferences: " + prefs + "\n"
	if m.Text != wantText {
		t.Errorf("text =\n%s\nwant\n%s", m.Text, wantText)
	}
	footer := `Waymark Ltd<br>1 Harbour Street, Bristol BS1 4AA<br><a href="` + prefs + `" style="color:#6b7280">Email preferences</a> &middot; <a href="` + unsub + `" style="color:#6b7280">Unsubscribe</a></div>`
	i := strings.Index(m.HTML, footer)
	if i < 0 {
		t.Fatalf("HTML has no footer %q:\n%s", footer, m.HTML)
	}
	if j := strings.Index(m.HTML, "</BODY>"); j != i+len(footer) {
		t.Errorf("the footer is not right before </body>:\n%s", m.HTML)
	}
}

func TestDecorateFooterWithoutBody(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	d.PostalAddress = "A & B <Co>, 1 Road"
	m := &mailer.Message{Text: "x", HTML: "<p>Hi</p>"}
	d.Decorate(m, 1, 2, false)
	if !strings.HasPrefix(m.HTML, "<p>Hi</p><div") || !strings.HasSuffix(m.HTML, "Unsubscribe</a></div>") {
		t.Errorf("the footer is not appended at the end:\n%s", m.HTML)
	}
	if !strings.Contains(m.HTML, "A &amp; B &lt;Co&gt;, 1 Road<br>") {
		t.Errorf("the postal address is not escaped:\n%s", m.HTML)
	}
}

var hrefs = regexp.MustCompile(`href=("[^"]*"|'[^']*'|[^\s>]+)`)

func TestDecorateTrackingRewritesLinksAndAddsPixel(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	m := message(t, d)
	templateUnsub, _ := d.Links(42, 7)
	d.Decorate(m, 42, 7, true)

	var got []string
	for _, h := range hrefs.FindAllStringSubmatch(m.HTML, -1) {
		v := strings.Trim(h[1], `"'`)
		if tok, ok := strings.CutPrefix(v, "https://mail.example.com/c/"); ok {
			ct, err := d.Signer.Verify(Click, html.UnescapeString(tok), t0)
			if err != nil {
				t.Fatalf("click link %q: %v", v, err)
			}
			if ct.ContactID != 42 || ct.SendID != 7 || !ct.Expires.Equal(t0.Add(DefaultTrackTTL)) {
				t.Errorf("click token %+v", ct)
			}
			v = "click:" + ct.URL
		}
		got = append(got, v)
	}
	unsub, prefs := d.Links(42, 7)
	want := []string{
		"click:https://shop.example.com/sale?a=1&b=2",
		"click:http://blog.example.com/post",
		"mailto:help@example.com",
		"#top",
		templateUnsub, // Waymark's own link is left as it is
		"click:https://map.example.com/",
		prefs, unsub, // the footer
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("links =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(m.Text, "/c/") {
		t.Errorf("the text part's links were rewritten:\n%s", m.Text)
	}
	px := regexp.MustCompile(`<td width="1" height="1" background="https://mail\.example\.com/o/([A-Za-z0-9_-]+)"`).FindAllStringSubmatch(m.HTML, -1)
	if len(px) != 1 {
		t.Fatalf("pixels: %q, want one:\n%s", px, m.HTML)
	}
	if ot, err := d.Signer.Verify(Open, px[0][1], t0); err != nil || ot.ContactID != 42 || ot.SendID != 7 {
		t.Errorf("pixel token %+v, %v", ot, err)
	}
	if !strings.HasSuffix(m.HTML, `</td></tr></table></BODY></html>`) || strings.Contains(m.HTML, "<img") {
		t.Errorf("the pixel is not right before </body>:\n%s", m.HTML)
	}
}

func TestDecorateWithoutTracking(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	m := message(t, d)
	before := m.HTML
	d.Decorate(m, 42, 7, false)
	if strings.Contains(m.HTML, "/c/") || strings.Contains(m.HTML, "/o/") || strings.Contains(m.HTML, "<img") {
		t.Errorf("tracking off, but links were rewritten or a pixel added:\n%s", m.HTML)
	}
	if !strings.HasPrefix(m.HTML, strings.TrimSuffix(before, "</BODY></html>")) {
		t.Errorf("tracking off, but the template's HTML changed:\n%s", m.HTML)
	}
}

func TestDecorateTwiceKeepsOneHeaderEach(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	m := message(t, d)
	d.Decorate(m, 42, 7, true)
	d.Decorate(m, 42, 7, true)
	if n := len(headerValues(m, "List-Unsubscribe")); n != 1 {
		t.Errorf("%d List-Unsubscribe headers", n)
	}
	if n := len(headerValues(m, "List-Unsubscribe-Post")); n != 1 {
		t.Errorf("%d List-Unsubscribe-Post headers", n)
	}
}

// BenchmarkDecorate: headers, footer, 8 tracked links and the pixel on a
// typical 6 KB marketing email.
func BenchmarkDecorate(b *testing.B) {
	d := &Decorator{PublicURL: "https://mail.example.com", PostalAddress: "Waymark Ltd\n1 Harbour Street, Bristol BS1 4AA", From: "news@brand.example"}
	var err error
	if d.Signer, err = NewSigner("a-benchmark-secret-of-some-length"); err != nil {
		b.Fatal(err)
	}
	var body strings.Builder
	body.WriteString("<html><head><style>p{margin:0}</style></head><body><table>")
	for i := 0; i < 8; i++ {
		body.WriteString(`<tr><td style="padding:16px 32px;font-family:Georgia,serif;font-size:16px;line-height:24px;color:#2b2a26">`)
		body.WriteString(strings.Repeat("Our autumn range is here: wool throws, cedar planters and more. ", 10))
		body.WriteString(`<a href="https://shop.example.com/collections/autumn?utm_source=waymark&amp;utm_campaign=welcome&amp;i=` + string(rune('0'+i)) + `" style="color:#46613e">Shop now</a></td></tr>`)
	}
	body.WriteString("</table></body></html>")
	html := body.String()
	b.SetBytes(int64(len(html)))
	b.ReportAllocs()
	for b.Loop() {
		m := &mailer.Message{ID: "42.7", From: "news@brand.example", To: "ann@example.com", Subject: "Hi", Text: "Hello Ann\n", HTML: html}
		d.Decorate(m, 42, 7, true)
	}
}

func TestRewriteLinksReadsAttributes(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	click := func(target string) string {
		return html.EscapeString("https://mail.example.com/c/" + d.sign(Click, 1, 2, target, t0))
	}
	for _, tc := range []struct{ name, in, want string }{
		{"double quotes", `<a href="https://x.example/">x</a>`, `<a href="` + click("https://x.example/") + `">x</a>`},
		{"upper case, spaces around =", `<A CLASS=b HREF = 'https://x.example/a'>x</A>`, `<A CLASS=b HREF = "` + click("https://x.example/a") + `">x</A>`},
		{"unquoted, self-closing area", `<area shape=rect href=https://x.example/m/>`, `<area shape=rect href="` + click("https://x.example/m/") + `">`},
		{"entities in the URL", `<a href="https://x.example/?a=1&amp;b=2">`, `<a href="` + click("https://x.example/?a=1&b=2") + `">`},
		{"data-href is not href", `<a data-href="https://x.example/" title="x">x</a>`, `<a data-href="https://x.example/" title="x">x</a>`},
		{"href= inside another value", `<a title=" href=https://evil.example/" href="https://x.example/">`, `<a title=" href=https://evil.example/" href="` + click("https://x.example/") + `">`},
		{"abbr and link tags", `<abbr href="https://x.example/">x</abbr><link href="https://x.example/s.css">`, `<abbr href="https://x.example/">x</abbr><link href="https://x.example/s.css">`},
		{"relative and mailto", `<a href="/a">a</a><a href="mailto:a@x.example">m</a>`, `<a href="/a">a</a><a href="mailto:a@x.example">m</a>`},
		{"unterminated", `<a href="https://x.example/`, `<a href="https://x.example/`},
		{"no href", `<a name=top>`, `<a name=top>`},
	} {
		if got := d.rewriteLinks(tc.in, 1, 2, t0); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// DecorateLinks, given the URLs Links made for the template, decorates
// exactly as Decorate does, and falls back to signing them itself when it
// is given none.
func TestDecorateLinksMatchesDecorate(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	want := message(t, d)
	d.Decorate(want, 42, 7, true)
	unsub, prefs := d.Links(42, 7)
	for _, links := range [][2]string{{unsub, prefs}, {"", ""}} {
		got := message(t, d)
		d.DecorateLinks(got, 42, 7, true, links[0], links[1])
		if got.Text != want.Text || got.HTML != want.HTML || strings.Join(headerValues(got, "List-Unsubscribe"), "|") != strings.Join(headerValues(want, "List-Unsubscribe"), "|") {
			t.Errorf("DecorateLinks with %q differs from Decorate:\ntext %q\nwant %q\nheaders %v\nwant %v", links, got.Text, want.Text, got.Headers, want.Headers)
		}
	}
}
