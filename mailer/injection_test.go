package mailer_test

import (
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/mailer"
)

// A subject holding text that looks like an RFC 2047 encoded-word is sent
// encoded as a whole, so the recipient's client reads back exactly what
// was written: an encoded line break or field in contact data stays text.
func TestSubjectThatLooksEncodedReadsBackAsWritten(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	c := dial(t, srv)
	for i, subject := range []string{
		"Hi =?utf-8?q?=0D=0ABcc:_evil@attacker.example?=",
		"=?UTF-8?B?DQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?=",
		"Zoë =?iso-8859-1?q?=0A?= " + strings.Repeat("ünïcödé ", 20) + "=?",
		"2+2=? 4",
	} {
		m := message("enc"+string(rune('a'+i)), "zoe@customer.example")
		m.Subject = subject
		if res := send(t, c, m); res.Outcome != mailer.Sent {
			t.Fatalf("%q: Send = %v", subject, res)
		}
		got := srv.WaitFor(i+1, 5*time.Second)[i]
		decoded, err := got.DecodedHeader("Subject")
		if err != nil || decoded != subject {
			t.Errorf("subject %q reads back as %q (%v)\n%s", subject, decoded, err, got.Data)
		}
		head, _, _ := strings.Cut(string(got.Data), "\r\n\r\n")
		for _, line := range strings.Split(head, "\r\n") {
			if len(line) > 998 {
				t.Errorf("%q: a header line of %d characters", subject, len(line))
			}
		}
		if names := strings.Join(got.HeaderNames(), ","); strings.Count(strings.ToLower(names), "subject") != 1 || strings.Contains(strings.ToLower(names), "bcc") {
			t.Errorf("%q: fields %s", subject, names)
		}
	}
}

// Bodies that try to end the message early (a lone dot, with every kind
// of line end) and start another SMTP transaction are dot-stuffed and
// encoded: the server receives exactly one message, to its one recipient,
// with the hostile text intact inside it.
func TestBodyCannotSmuggleASecondMessage(t *testing.T) {
	t.Parallel()
	smuggle := "MAIL FROM:<x@attacker.example>\r\nRCPT TO:<evil@attacker.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\n"
	for _, tc := range []struct{ name, end string }{
		{"CRLF dot CRLF", "\r\n.\r\n"},
		{"LF dot LF", "\n.\n"},
		{"LF dot CRLF", "\n.\r\n"},
		{"CRLF dot LF", "\r\n.\n"},
		{"CR dot CR", "\r.\r"},
		{"dot at the start", ".\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t)
			c := dial(t, srv)
			m := message("smuggle", "zoe@customer.example")
			m.Text = "Hello" + tc.end + smuggle + "bye"
			m.HTML = "<p>Hello</p>" + tc.end + smuggle + "<p>bye</p>"
			if res := send(t, c, m); res.Outcome != mailer.Sent {
				t.Fatalf("Send = %v", res)
			}
			// A second, valid message on the same connection: the
			// session is still in step.
			if res := send(t, c, message("after", "ann@customer.example")); res.Outcome != mailer.Sent {
				t.Fatalf("the next message: %v", res)
			}
			msgs := srv.WaitFor(2, 5*time.Second)
			time.Sleep(100 * time.Millisecond)
			if n := srv.Count(); n != 2 {
				t.Fatalf("the server received %d messages, want 2", n)
			}
			for i, want := range []string{"zoe@customer.example", "ann@customer.example"} {
				if strings.Join(msgs[i].To, ",") != want {
					t.Errorf("message %d went to %v, want only %s", i+1, msgs[i].To, want)
				}
			}
			parts, err := msgs[0].Parts()
			if err != nil {
				t.Fatalf("not valid MIME: %v", err)
			}
			if len(parts) != 2 || !strings.Contains(string(parts[0].Body), "RCPT TO:<evil@attacker.example>") || !strings.HasSuffix(strings.TrimSpace(string(parts[0].Body)), "bye") {
				t.Errorf("the hostile text did not arrive intact inside the message: %d parts\n%s", len(parts), msgs[0].Data)
			}
			if subj, err := msgs[0].DecodedHeader("Subject"); err != nil || subj != "Welcome, Zoë" || len(msgs[0].Header("Subject")) != 1 {
				t.Errorf("subject %q (%v), fields %q", subj, err, msgs[0].Header("Subject"))
			}
		})
	}
}

// A recipient that parses as one address goes to that address alone,
// however it is quoted; anything else is refused before SMTP.
func TestRecipientIsOneAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		to, want string // want "" = refused
	}{
		{"zoe@customer.example", "zoe@customer.example"},
		{"<zoe@customer.example>", "zoe@customer.example"},
		{"Zoe <zoe@customer.example>", "zoe@customer.example"},
		{"zoe@customer.example>, <evil@attacker.example", ""},
		{"zoe@customer.example;evil@attacker.example", ""},
		{"zoe@customer.example\tBcc: evil@attacker.example", ""},
		{"zoe@customer.example (Bcc: evil@attacker.example)", "zoe@customer.example"},
		{"\"evil@attacker.example\" <zoe@customer.example>", "zoe@customer.example"},
		{"zoe@customer.example\u2028Bcc: evil@attacker.example", ""},
	} {
		t.Run(tc.to, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t)
			c := dial(t, srv)
			res := send(t, c, message("rcpt", tc.to))
			if tc.want == "" {
				if res.Outcome != mailer.PermFail || res.Stage != mailer.StageBuild {
					t.Fatalf("Send(%q) = %v, want refused before SMTP", tc.to, res)
				}
				if srv.Count() != 0 {
					t.Fatalf("the server received %d messages", srv.Count())
				}
				return
			}
			if res.Outcome != mailer.Sent {
				t.Fatalf("Send(%q) = %v", tc.to, res)
			}
			got := srv.WaitFor(1, 5*time.Second)[0]
			if strings.Join(got.To, ",") != tc.want {
				t.Errorf("envelope recipients %v, want only %s", got.To, tc.want)
			}
			// Whatever else was written becomes a quoted display name.
			to := got.Header("To")
			if len(to) != 1 {
				t.Fatalf("To fields %q", to)
			}
			if as, err := mail.ParseAddressList(to[0]); err != nil || len(as) != 1 || as[0].Address != tc.want {
				t.Errorf("To field %q parses as %v (%v), want the one address %s", to[0], as, err, tc.want)
			}
		})
	}
}
