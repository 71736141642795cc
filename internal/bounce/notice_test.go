package bounce_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/bounce"
)

// filled is a returned-email fixture with its placeholders filled in.
func filled(t *testing.T, name, returnPath, messageID string) []byte {
	t.Helper()
	s := strings.ReplaceAll(string(fixture(t, name)), "{{RETURN_PATH}}", returnPath)
	return []byte(strings.ReplaceAll(s, "{{MESSAGE_ID}}", messageID))
}

// Each published notice reads as what it says: who, what happened, which
// email, when; and what Waymark makes of it.
func TestNoticesParse(t *testing.T) {
	const mid = "12.34.abcdefgh12345678@shop.example"
	for _, tc := range []struct {
		file, want string
	}{
		{"dsn_rfc3464_timeout.eml", "id <199407072116.RAA14128@CS.UTK.EDU> at 1994-07-07T21:15:49Z original []\n" +
			"  louisl@larry.slip.umd.edu failed 4.0.0 smtp; 426 connection timed out\n" +
			"  outcome bounce/soft louisl@larry.slip.umd.edu"},
		{"dsn_rfc3464_delayed.eml", "id <199409252235.SAA11712@example.org> at 1994-09-25T18:34:52Z original [<" + mid + ">]\n" +
			"  customer@example.net delayed 4.4.1 smtp; 421 4.4.1 connection timed out\n" +
			"  nothing to record"},
		{"dsn_postfix_unknown_user.eml", "id <20261110081203.4CsxNC3Bbqz3wXy@mail.shop.example> at 2026-11-10T08:12:01Z original [<" + mid + ">]\n" +
			"  customer@example.net failed 5.1.1 smtp; 550 5.1.1 <customer@example.net>: Recipient address rejected: User unknown in virtual mailbox table\n" +
			"  outcome bounce/hard customer@example.net"},
		{"arf_rfc5965.eml", "id sha256:* at 2005-03-08T18:00:00Z original [<" + mid + ">] feedback abuse\n" +
			"  outcome complaint/ "},
	} {
		t.Run(tc.file, func(t *testing.T) {
			n, err := bounce.ParseNotice(filled(t, tc.file, "bounces+12.34.aaaaaaaaaaaaaaaa@bounces.shop.example", mid))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			id := n.ID
			if strings.HasPrefix(id, "sha256:") && len(id) == len("sha256:")+32 {
				id = "sha256:*"
			}
			fmt.Fprintf(&b, "id %s at %s original %v", id, n.At.UTC().Format(time.RFC3339), n.Original)
			if n.Feedback != "" {
				fmt.Fprintf(&b, " feedback %s", n.Feedback)
			}
			for _, r := range n.Recipients {
				fmt.Fprintf(&b, "\n  %s %s %s %s", r.Recipient, r.Action, r.Status, r.Diagnostic)
			}
			if kind, bt, r, ok := n.Outcome(); ok {
				fmt.Fprintf(&b, "\n  outcome %s/%s %s", kind, bt, r.Recipient)
			} else {
				b.WriteString("\n  nothing to record")
			}
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
}

// What is not a notice is told apart from a notice that is broken.
func TestNoticeRefusals(t *testing.T) {
	if _, err := bounce.ParseNotice(filled(t, "autoreply.eml", "x@y.example", "")); !errors.Is(err, bounce.ErrNotANotice) {
		t.Errorf("an auto-reply: %v, want ErrNotANotice", err)
	}
	if _, err := bounce.ParseNotice([]byte("not even a header")); !errors.Is(err, bounce.ErrNotANotice) {
		t.Errorf("garbage: %v, want ErrNotANotice", err)
	}
	noAction := strings.Replace(string(fixture(t, "dsn_rfc3464_timeout.eml")), "Action: failed\n", "", 1)
	if _, err := bounce.ParseNotice([]byte(noAction)); err == nil || errors.Is(err, bounce.ErrNotANotice) {
		t.Errorf("a DSN without Action: %v, want an error saying so", err)
	}
}

// A return path names its send, signed: another send's, another
// domain's, a changed or a made-up signature are not read; letter case
// changed by a server is; a rotated secret's return paths still are.
func TestVERP(t *testing.T) {
	old, err := bounce.NewVERP("bounces.shop.example", "the-old-secret-of-enough-length")
	if err != nil {
		t.Fatal(err)
	}
	v, err := bounce.NewVERP("Bounces.Shop.Example", "a-test-secret-of-enough-length", "the-old-secret-of-enough-length")
	if err != nil {
		t.Fatal(err)
	}
	rp := v.ReturnPath(12, 34)
	if !strings.HasPrefix(rp, "bounces+12.34.") || !strings.HasSuffix(rp, "@bounces.shop.example") || len(rp) != len("bounces+12.34.")+16+len("@bounces.shop.example") {
		t.Fatalf("return path %q", rp)
	}
	for _, addr := range []string{rp, "<" + rp + ">", strings.ToUpper(rp), old.ReturnPath(12, 34)} {
		if c, s, ok := v.Parse(addr); !ok || c != 12 || s != 34 {
			t.Errorf("Parse(%q) = %d, %d, %v; want 12, 34", addr, c, s, ok)
		}
	}
	mac := rp[len("bounces+12.34.") : len("bounces+12.34.")+16]
	for _, addr := range []string{
		"bounces+12.35." + mac + "@bounces.shop.example", // another send
		"bounces+13.34." + mac + "@bounces.shop.example", // another contact
		strings.Replace(rp, "@bounces.shop.example", "@other.example", 1),
		"bounces+12.34.aaaaaaaaaaaaaaaa@bounces.shop.example",
		"bounces+12.34@bounces.shop.example",
		"fbl@bounces.shop.example",
	} {
		if _, _, ok := v.Parse(addr); ok {
			t.Errorf("Parse(%q) read it", addr)
		}
	}
	if _, _, ok := old.Parse(rp); ok {
		t.Error("the old secret reads the new one's return path")
	}
	for _, bad := range []string{"", "localhost", "bounces shop.example", "-x.example"} {
		if _, err := bounce.NewVERP(bad, "a-test-secret-of-enough-length"); err == nil {
			t.Errorf("NewVERP(%q) accepted", bad)
		}
	}
}
