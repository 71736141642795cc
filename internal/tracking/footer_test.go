package tracking

import (
	"html"
	"strings"
	"testing"

	"github.com/waymark/waymark/mailer"
)

// A template with a footer of its own (its unsubscribe and preferences
// links) keeps it as the one footer; Waymark adds only the postal
// address. Without one, Waymark's footer is added.
func TestOneFooter(t *testing.T) {
	t.Parallel()
	d := newDecorator(t)
	unsub, prefs := d.Links(42, 7)
	own := &mailer.Message{ID: "42.7", From: "news@brand.example", To: "ann@example.com", Subject: "Hi",
		Text: "Hello Ann\n\n--\nChoose what we send you: " + prefs + "\nUnsubscribe: " + unsub + "\n",
		HTML: `<html><body><p>Hello Ann</p><p><a href="` + html.EscapeString(prefs) + `">Choose what we send you</a> · <a href="` + html.EscapeString(unsub) + `">Unsubscribe</a></p></body></html>`}
	d.DecorateLinks(own, 42, 7, false, unsub, prefs)
	for part, body := range map[string]string{"text": own.Text, "html": own.HTML} {
		if n := strings.Count(body, unsub); n != 1 {
			t.Errorf("%s part: the unsubscribe link %d times, want once (the template's footer):\n%s", part, n, body)
		}
		if n := strings.Count(body, "1 Harbour Street"); n != 1 {
			t.Errorf("%s part: the postal address %d times, want once:\n%s", part, n, body)
		}
	}
	if strings.Contains(own.Text, "\n-- \n") || strings.Contains(own.HTML, ">Email preferences<") {
		t.Errorf("a second footer was added:\n%s\n%s", own.Text, own.HTML)
	}

	bare := &mailer.Message{ID: "42.7", From: "news@brand.example", To: "ann@example.com", Subject: "Hi", Text: "Hello Ann\n", HTML: "<p>Hello Ann</p>"}
	d.DecorateLinks(bare, 42, 7, false, unsub, prefs)
	for part, body := range map[string]string{"text": bare.Text, "html": bare.HTML} {
		if strings.Count(body, unsub) != 1 || strings.Count(body, "1 Harbour Street") != 1 {
			t.Errorf("%s part without a footer of its own did not get Waymark's:\n%s", part, body)
		}
	}
}
