package examples_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/examples"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/internal/tracking"
	"github.com/waymark/waymark/mailer"
	"github.com/waymark/waymark/templates"
)

// The most a spam filter's local tests may score one of the example
// journey's emails (SpamAssassin flags spam at 5.0).
const maxSpamScore = 1.0

// spamAssassin returns the spamassassin command, or skips the test when it
// is not installed — but not under CI=true, which installs it (.ci/test).
func spamAssassin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("spamassassin")
	if err == nil {
		return p
	}
	msg := "spamassassin is not installed: apt-get install spamassassin (.ci/test installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Every email of the example journey, in every tone, as Waymark sends it
// (rendered, decorated with its footer, unsubscribe headers and tracked
// links, built by the mailer, from the display-name sender the example
// uses), scores at most maxSpamScore with SpamAssassin's local tests.
func TestExampleEmailsPassSpamFilters(t *testing.T) {
	t.Parallel()
	sa := spamAssassin(t)
	j, err := journey.Load(examples.Journey)
	if err != nil {
		t.Fatal(err)
	}
	const from = "Fernwood Supply <hello@fernwoodsupply.example>"
	signer, err := tracking.NewSigner(strings.Repeat("k", 32))
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	dec := &tracking.Decorator{Signer: signer, PublicURL: "https://fernwoodsupply.example", From: from,
		PostalAddress: "Fernwood Supply, 1200 NW Alder Street, Portland, OR 97209, USA", Now: clock.Now}
	srv := smtptest.Start(t)
	d, err := mailer.NewDialer(mailer.Config{Host: "127.0.0.1", Port: srv.Port(), TLS: "none", DialTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := d.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Every template in every variant, each to its own contact.
	var names []string
	for i, tpl := range j.Templates {
		c, err := templates.Compile(tpl)
		if err != nil {
			t.Fatal(err)
		}
		for _, tone := range append([]string{""}, c.Tones()...) {
			contactID, sendID := int64(100+i), int64(1000+len(names))
			traits := map[string]any{"first_name": "ann"}
			if tone == "formal" {
				traits["company"] = "Alder Lodge"
			}
			unsub, prefs := dec.Links(contactID, sendID)
			r, err := c.Render(tone, &templates.Data{
				Contact:        templates.Contact{Email: "ann@example.com", Traits: traits, Stage: "retention"},
				Tone:           tone,
				Offer:          &templates.Offer{Name: "surprise-thank-you", Code: "THANKS-7Q2XK4MP3B", ExpiresAt: now.Add(30 * 24 * time.Hour)},
				UnsubscribeURL: unsub, PreferencesURL: prefs,
			})
			if err != nil {
				t.Fatal(err)
			}
			m := &mailer.Message{ID: fmt.Sprintf("%d.%d.k3x9f2ab7cqm4z5t", contactID, sendID), From: from, To: "ann@example.com",
				Subject: r.Subject, Text: r.Text, HTML: r.HTML, Date: now}
			dec.DecorateLinks(m, contactID, sendID, j.Settings.Tracking, unsub, prefs)
			if res := conn.Send(ctx, m); res.Outcome != mailer.Sent {
				t.Fatalf("%s %s: %v", tpl.Name, tone, res)
			}
			names = append(names, fmt.Sprintf("%s (%s)", tpl.Name, map[bool]string{true: "base", false: tone}[tone == ""]))
		}
	}
	msgs := srv.WaitFor(len(names), 10*time.Second)

	// One spamassassin run over all of them (an mbox), local tests only,
	// no Bayes learning, nothing written to the user's home.
	var mbox bytes.Buffer
	for _, m := range msgs {
		mbox.WriteString("From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n")
		data := strings.ReplaceAll(string(m.Data), "\r\n", "\n")
		// mbox quoting of body lines starting with "From ".
		data = regexp.MustCompile(`(?m)^(>*From )`).ReplaceAllString(data, ">$1")
		mbox.WriteString(strings.TrimRight(data, "\n") + "\n\n")
	}
	cmd := exec.Command(sa, "-L", "-t", "--mbox", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.Stdin = &mbox
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("spamassassin: %v\n%s", err, errb.String())
	}
	status := regexp.MustCompile(`(?m)^X-Spam-Status: \w+, score=(-?[0-9.]+) required=[0-9.]+ tests=((?:[^\n]|\n[ \t])*?)\s+autolearn`)
	found := status.FindAllStringSubmatch(out.String(), -1)
	if len(found) != len(names) {
		t.Fatalf("spamassassin reported %d messages, want %d:\n%s", len(found), len(names), errb.String())
	}
	var report []string
	for i, f := range found {
		score, _ := strconv.ParseFloat(f[1], 64)
		tests := strings.Join(strings.Fields(f[2]), "")
		report = append(report, fmt.Sprintf("%5.1f  %-32s %s", score, names[i], tests))
		if score > maxSpamScore {
			t.Errorf("%s scores %.1f (over %.1f): %s", names[i], score, maxSpamScore, tests)
		}
	}
	slices.Sort(report)
	t.Logf("SpamAssassin, local tests, %d emails:\n%s", len(report), strings.Join(report, "\n"))
}
