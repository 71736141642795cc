package journey

import (
	"slices"
	"strings"
	"testing"
)

// webhooks: as DESIGN.md writes it parses; each mistake is refused at its
// place, and nothing else of the file is taken.
func TestWebhooksInTheJourneyFile(t *testing.T) {
	t.Parallel()
	j, err := Parse("j.yaml", []byte(`webhooks:
  - name: crm
    url: https://crm.example.com/hooks/waymark
    events: [stage_changed, email_bounced, email_complained, unsubscribed, offer_given]
    secret_env: WAYMARK_WEBHOOK_CRM_SECRET
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Webhooks) != 1 {
		t.Fatalf("webhooks %+v", j.Webhooks)
	}
	w := j.Webhooks[0]
	if w.Name != "crm" || w.URL != "https://crm.example.com/hooks/waymark" || w.SecretEnv != "WAYMARK_WEBHOOK_CRM_SECRET" ||
		!slices.Equal(w.Events, []string{"stage_changed", "email_bounced", "email_complained", "unsubscribed", "offer_given"}) || !slices.Contains(w.Events, "offer_given") || slices.Contains(w.Events, "email_sent") {
		t.Errorf("webhook %+v", w)
	}
	for name, c := range map[string]struct{ src, want string }{
		"not a URL":        {"webhooks:\n  - {name: a, url: crm.example.com, events: [enrolled], secret_env: S}\n", `j.yaml:2:`},
		"unknown event":    {"webhooks:\n  - {name: a, url: https://x.example, events: [stage_change], secret_env: S}\n", `unknown event "stage_change"`},
		"suggestion":       {"webhooks:\n  - {name: a, url: https://x.example, events: [stage_change], secret_env: S}\n", `did you mean "stage_changed"?`},
		"a secret inline":  {"webhooks:\n  - {name: a, url: https://x.example, events: [enrolled], secret_env: 'whsec_abc'}\n", `secret_env must name an environment variable`},
		"no events":        {"webhooks:\n  - {name: a, url: https://x.example, events: [], secret_env: S}\n", `events must be a list of one or more`},
		"missing url":      {"webhooks:\n  - {name: a, events: [enrolled], secret_env: S}\n", `webhook "a": missing url`},
		"two of one name":  {"webhooks:\n  - {name: a, url: https://x.example, events: [enrolled], secret_env: S}\n  - {name: a, url: https://y.example, events: [enrolled], secret_env: S}\n", `"a"`},
		"typo in a key":    {"webhooks:\n  - {name: a, url: https://x.example, event: [enrolled], secret_env: S}\n", `did you mean "events"?`},
		"webhooks no list": {"webhooks: {name: a}\n", `webhooks must be a list`},
	} {
		if _, err := Parse("j.yaml", []byte(c.src)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}
