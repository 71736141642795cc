package main

import (
	"net"
	"net/smtp"
	"regexp"
	"strings"
	"testing"
)

// freeAddr is a loopback address nothing listens on (for a listener the
// server starts itself).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Bounces by email, for users of their own Postfix: each email goes out
// with a return path of its own (bounces+CONTACT.SEND.MAC@domain), and
// the bounce listener records what mail servers return to it — a hard
// bounce suppresses the address and cancels what is queued to it, a
// soft one is counted, a delay warning and an auto-reply record nothing,
// a feedback loop's abuse report is a complaint — each once, tied to its
// send. Mail for a made-up return path, another send's, or any other
// mailbox is refused at RCPT and changes nothing.
func TestBounceListenerRecordsReturnedMail(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	people := []string{"ann@example.net", "bob@example.net", "cat@example.net", "dan@example.net", "eve@example.net"}
	h := startHooksWith(t, map[string]string{"WAYMARK_BOUNCE_DOMAIN": "Bounces.Shop.Example", "WAYMARK_BOUNCE_SMTP_ADDR": addr}, people...)

	// Each welcome's envelope sender is its own return path; the author
	// is still the shop.
	verp := regexp.MustCompile(`^bounces\+([0-9]+)\.([0-9]+)\.[a-z2-7]{16}@bounces\.shop\.example$`)
	returnPath := map[string]string{}
	for _, m := range h.smtp.Messages() {
		to := m.To[0]
		got := verp.FindStringSubmatch(m.From)
		if got == nil {
			t.Fatalf("the welcome to %s went out with MAIL FROM %q, not a return path of its own", to, m.From)
		}
		if want := one(t, h.pool, `SELECT contact_id || '.' || id FROM sends WHERE recipient = $1 AND template = 'welcome'`, to); got[1]+"."+got[2] != want {
			t.Fatalf("the return path %s names %s.%s, the send is %s", m.From, got[1], got[2], want)
		}
		if from := m.Header("From"); len(from) != 1 || from[0] != "<shop@shop.example>" {
			t.Errorf("From %q", from)
		}
		returnPath[to] = m.From
	}
	if len(returnPath) != len(people) {
		t.Fatalf("%d welcomes, want %d", len(returnPath), len(people))
	}
	send := func(rcpt, file, messageID string) error {
		t.Helper()
		body := strings.ReplaceAll(readFixture(t, file), "{{RETURN_PATH}}", rcpt)
		body = strings.ReplaceAll(body, "{{MESSAGE_ID}}", strings.Trim(messageID, "<>"))
		return smtp.SendMail(addr, nil, "", []string{rcpt}, []byte(strings.ReplaceAll(body, "\n", "\r\n")))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(send(returnPath["ann@example.net"], "dsn_postfix_unknown_user.eml", h.messageID("ann@example.net")))
	must(send(returnPath["bob@example.net"], "dsn_rfc3464_timeout.eml", ""))
	must(send(returnPath["cat@example.net"], "dsn_rfc3464_delayed.eml", h.messageID("cat@example.net")))
	must(send("fbl@bounces.shop.example", "arf_rfc5965.eml", h.messageID("dan@example.net")))
	must(send(returnPath["eve@example.net"], "autoreply.eml", ""))
	before := h.counts()
	// The same notice again counts once.
	must(send(returnPath["ann@example.net"], "dsn_postfix_unknown_user.eml", h.messageID("ann@example.net")))

	// Refused at RCPT: a changed signature, another send's numbers with
	// this one's signature, a mailbox that is not a return path.
	rp := returnPath["eve@example.net"]
	forged := rp[:len(rp)-len("@bounces.shop.example")-1] + "a@bounces.shop.example"
	if forged == rp {
		forged = rp[:len(rp)-len("@bounces.shop.example")-1] + "b@bounces.shop.example"
	}
	m := verp.FindStringSubmatch(rp)
	otherSend := strings.Replace(rp, "."+m[2]+".", "."+m[2]+"9.", 1)
	for _, rcpt := range []string{forged, otherSend, "postmaster@bounces.shop.example", "eve@example.net"} {
		err := send(rcpt, "dsn_postfix_unknown_user.eml", h.messageID("eve@example.net"))
		if err == nil || !strings.Contains(err.Error(), "550") {
			t.Errorf("mail for %s: %v, want 550", rcpt, err)
		}
	}
	if after := h.counts(); after != before {
		t.Fatalf("a notice twice and refused mail changed %s into %s", before, after)
	}

	for email, want := range map[string]string{
		"ann@example.net": "hard_bounce | tips cancelled hard_bounce | email_bounced/hard@dsn send welcome",
		"bob@example.net": "not suppressed | tips queued | email_bounced/soft@dsn send welcome",
		"cat@example.net": "not suppressed | tips queued | no events",
		"dan@example.net": "complaint | tips cancelled complaint | email_complained@arf send welcome",
		"eve@example.net": "not suppressed | tips queued | no events",
	} {
		if got := h.state(email); got != want {
			t.Errorf("%s: %s\nwant %s", email, got, want)
		}
	}
	// What the notice said, kept with the report.
	if got := one(t, h.pool, `SELECT detail FROM delivery_reports WHERE provider = 'dsn' AND kind = 'bounce' AND bounce_type = 'hard'`); !strings.HasPrefix(got, "5.1.1: smtp; 550 5.1.1 <customer@example.net>: Recipient address rejected") {
		t.Errorf("detail %q", got)
	}
}
