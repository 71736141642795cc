package smtptest_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/waymark/waymark/internal/smtptest"
)

const multipartMsg = "From: A <a@example.com>\r\n" +
	"To: b@example.org\r\n" +
	"Subject: =?UTF-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Message-ID: <m1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=XX\r\n" +
	"\r\n" +
	"--XX\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Hello =C3=BC\r\n" +
	"--XX\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+SGk8L3A+\r\n" +
	"--XX--\r\n"

func send(t *testing.T, addr, from string, to []string, msg string) error {
	t.Helper()
	return smtp.SendMail(addr, nil, from, to, []byte(msg))
}

func TestRecordsAndParses(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t)
	if err := send(t, s.Addr(), "a@example.com", []string{"b@example.org"}, multipartMsg); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := s.WaitFor(1, 5*time.Second)
	m := msgs[0]
	if m.From != "a@example.com" || len(m.To) != 1 || m.To[0] != "b@example.org" {
		t.Errorf("envelope = %q -> %q, want a@example.com -> [b@example.org]", m.From, m.To)
	}
	if got := m.Header("message-id"); len(got) != 1 || got[0] != "<m1@example.com>" {
		t.Errorf("Message-ID = %q", got)
	}
	if subj, err := m.DecodedHeader("Subject"); err != nil || subj != "Grüße" {
		t.Errorf("Subject = %q, %v; want Grüße", subj, err)
	}
	parts, err := m.Parts()
	if err != nil {
		t.Fatalf("Parts: %v", err)
	}
	if len(parts) != 2 {
		t.Fatalf("got %d parts, want 2", len(parts))
	}
	if parts[0].ContentType != "text/plain" || string(parts[0].Body) != "Hello ü" {
		t.Errorf("part 0 = %s %q", parts[0].ContentType, parts[0].Body)
	}
	if parts[1].ContentType != "text/html" || string(parts[1].Body) != "<p>Hi</p>" {
		t.Errorf("part 1 = %s %q", parts[1].ContentType, parts[1].Body)
	}
	if got, want := strings.Join(m.HeaderNames(), ","), "From,To,Subject,Message-ID,MIME-Version,Content-Type"; got != want {
		t.Errorf("HeaderNames = %s, want %s", got, want)
	}
	if s.Count() != 1 || s.Connections() != 1 {
		t.Errorf("Count, Connections = %d, %d; want 1, 1", s.Count(), s.Connections())
	}
}

func TestFailRcptCountsAttempts(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t, smtptest.FailRcpt(func(rcpt string, attempt int) *gosmtp.SMTPError {
		if rcpt == "gone@example.org" {
			return smtptest.SMTPError(550, "5.1.1", "no such user")
		}
		if attempt <= 2 {
			return smtptest.SMTPError(451, "4.3.0", "try later")
		}
		return nil
	}))
	for i, wantCode := range []int{451, 451, 0} {
		err := send(t, s.Addr(), "a@example.com", []string{"b@example.org"}, multipartMsg)
		if code := replyCode(err); code != wantCode {
			t.Errorf("attempt %d: code %d (%v), want %d", i+1, code, err, wantCode)
		}
	}
	err := send(t, s.Addr(), "a@example.com", []string{"gone@example.org"}, multipartMsg)
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 550 || !strings.HasPrefix(te.Msg, "5.1.1 ") {
		t.Errorf("gone: %v, want 550 5.1.1", err)
	}
	if s.Count() != 1 {
		t.Errorf("Count = %d, want 1", s.Count())
	}
}

func TestFailData(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t, smtptest.FailData(func(m smtptest.Message, attempt int) *gosmtp.SMTPError {
		return smtptest.SMTPError(554, "5.7.1", "spam")
	}))
	err := send(t, s.Addr(), "a@example.com", []string{"b@example.org"}, multipartMsg)
	if code := replyCode(err); code != 554 {
		t.Errorf("code = %d (%v), want 554", code, err)
	}
	if s.Count() != 0 {
		t.Errorf("Count = %d, want 0: a rejected message is not recorded", s.Count())
	}
}

func TestDropAfterData(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t, smtptest.DropAfterData())
	err := send(t, s.Addr(), "a@example.com", []string{"b@example.org"}, multipartMsg)
	if err == nil || replyCode(err) != 0 {
		t.Errorf("send = %v, want a connection error without reply", err)
	}
	if s.Count() != 1 {
		t.Errorf("Count = %d, want 1: the message was fully received", s.Count())
	}
}

func TestNeverGreet(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t, smtptest.NeverGreetIf(func(n int) bool { return n == 1 }))
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var ne net.Error
	if _, err := bufio.NewReader(c).ReadString('\n'); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read from first connection = %v, want a timeout", err)
	}
	if err := send(t, s.Addr(), "a@example.com", []string{"b@example.org"}, multipartMsg); err != nil {
		t.Errorf("second connection: %v", err)
	}
	if s.Connections() != 2 {
		t.Errorf("Connections = %d, want 2", s.Connections())
	}
}

func TestAuthAndStartTLS(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t, smtptest.RequireAuth("u", "p"), smtptest.StartTLS(smtptest.SelfSignedCert(t)))
	for _, tc := range []struct {
		name, pass string
		wantAuth   int
	}{
		{"wrong password", "wrong", 535},
		{"right password", "p", 0},
	} {
		c, err := smtp.Dial(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("a@example.com"); replyCode(err) != 530 {
			t.Errorf("%s: MAIL before AUTH = %v, want 530", tc.name, err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatalf("%s: STARTTLS not offered", tc.name)
		}
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil { //nolint:gosec // self-signed test cert
			t.Fatalf("%s: STARTTLS: %v", tc.name, err)
		}
		err = c.Auth(smtp.PlainAuth("", "u", tc.pass, "127.0.0.1"))
		if replyCode(err) != tc.wantAuth || (tc.wantAuth == 0 && err != nil) {
			t.Fatalf("%s: AUTH = %v, want code %d", tc.name, err, tc.wantAuth)
		}
		if tc.wantAuth == 0 {
			if err := c.Mail("a@example.com"); err != nil {
				t.Errorf("MAIL after AUTH: %v", err)
			}
		}
	}
}

func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
