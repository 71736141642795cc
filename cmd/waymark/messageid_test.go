package main

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

// globalMessageID is <CONTACT.SEND.INSTALLATION@domain>.
var globalMessageID = regexp.MustCompile(`^<(\d+\.\d+)\.([a-z2-7]{16})@shop\.example>$`)

// Two installations (two databases) send their first contact's welcome:
// the same send (contact 1, send 1) in each, two different emails, so two
// different Message-IDs. Within one installation the id stays the same.
func TestMessageIDsAreGloballyUnique(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	contacts := writeFile(t, "contacts.csv", "userId,email,first_name\nann,ann@example.com,Ann\n")
	journey := writeFile(t, "journey.yaml", campaignJourney)
	type sent struct{ send, installation string }
	var got []sent
	for i := 0; i < 2; i++ {
		env := map[string]string{"DATABASE_URL": pgtest.Clone(t), "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", smtp.Addr()), "WAYMARK_FROM": "Shop <news@shop.example>"}
		for _, args := range [][]string{{"import", contacts}, {"apply", "-f", journey}, {"tick"}} {
			if _, errOut, err := runWith(t, env, args...); err != nil {
				t.Fatalf("installation %d: %v: %v\n%s", i, args, err, errOut)
			}
		}
		msgs := smtp.Messages()
		if len(msgs) != i+1 {
			t.Fatalf("installation %d: %d messages received in all, want %d", i, len(msgs), i+1)
		}
		ids := msgs[i].Header("Message-ID")
		if len(ids) != 1 {
			t.Fatalf("installation %d: Message-ID headers %q", i, ids)
		}
		m := globalMessageID.FindStringSubmatch(ids[0])
		if m == nil {
			t.Fatalf("installation %d: Message-ID %q is not <CONTACT.SEND.INSTALLATION@shop.example>", i, ids[0])
		}
		got = append(got, sent{m[1], m[2]})
	}
	if got[0].send != got[1].send {
		t.Fatalf("the two installations' first sends are %s and %s; the test wants the same send in both", got[0].send, got[1].send)
	}
	if got[0].installation == got[1].installation {
		t.Fatalf("two installations sent the same Message-ID <%s.%s@shop.example>", got[0].send, got[0].installation)
	}
}
