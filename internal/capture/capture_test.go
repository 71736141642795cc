package capture_test

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/capture"
	"github.com/waymark/waymark/mailer"
)

func start(t *testing.T, opts capture.Options) *capture.Server {
	t.Helper()
	s, err := capture.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dial(t *testing.T, s *capture.Server) *mailer.Conn {
	t.Helper()
	host, port, _ := net.SplitHostPort(s.Addr())
	var p int
	fmt.Sscan(port, &p)
	d, err := mailer.NewDialer(mailer.Config{Host: host, Port: p, TLS: "none", DialTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// What Waymark's own mailer sends (multipart, quoted-printable, encoded
// subject) comes back parsed: header decoded, both bodies as written.
func TestCapturesWhatTheMailerSends(t *testing.T) {
	t.Parallel()
	s := start(t, capture.Options{})
	c := dial(t, s)
	html := `<p style="margin:0">Hi Jüne, your code is <strong>FERN-8K2M</strong> — a long line that quoted-printable has to wrap because it is well over seventy-six characters long.</p>`
	text := "Hi Jüne,\n\nYour code: FERN-8K2M\n\nA long line that quoted-printable has to wrap because it is well over seventy-six characters long."
	res := c.Send(context.Background(), &mailer.Message{ID: "7.42", From: "Fernwood <news@fernwood.example>", To: "june@example.com",
		Subject: "A little thank-you, Jüne 🌲", Text: text, HTML: html, Date: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)})
	if res.Outcome != mailer.Sent {
		t.Fatalf("send: %v", res)
	}
	if s.Received() != 1 || s.Kept() != 1 {
		t.Fatalf("received %d, kept %d; want 1, 1", s.Received(), s.Kept())
	}
	list := s.List(0, 10)
	if len(list) != 1 {
		t.Fatalf("list: %d messages", len(list))
	}
	m := list[0]
	if m.ID != 1 || m.Subject != "A little thank-you, Jüne 🌲" || !strings.Contains(m.From, "news@fernwood.example") || !strings.Contains(m.To, "june@example.com") {
		t.Errorf("header: id %d, subject %q, from %q, to %q", m.ID, m.Subject, m.From, m.To)
	}
	if m.EnvelopeFrom != "news@fernwood.example" || len(m.EnvelopeTo) != 1 || m.EnvelopeTo[0] != "june@example.com" {
		t.Errorf("envelope: %q → %v", m.EnvelopeFrom, m.EnvelopeTo)
	}
	if strings.TrimRight(m.Text, "\n") != text {
		t.Errorf("text:\n%q\nwant\n%q", m.Text, text)
	}
	if strings.TrimRight(m.HTML, "\n") != html {
		t.Errorf("html:\n%q\nwant\n%q", m.HTML, html)
	}
	if !strings.Contains(m.MessageID, "7.42") || !m.Date.Equal(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("Message-ID %q, Date %v", m.MessageID, m.Date)
	}
	if m.ParseError != "" || m.Raw != nil {
		t.Errorf("parse error %q; raw in a list: %d bytes", m.ParseError, len(m.Raw))
	}
	got, ok := s.Get(1)
	if !ok || got.Subject != m.Subject || len(got.Raw) != got.Size || got.Size == 0 {
		t.Errorf("get(1): ok %v, subject %q, raw %d bytes, size %d", ok, got.Subject, len(got.Raw), got.Size)
	}
	if _, ok := s.Get(2); ok {
		t.Errorf("get(2) found a message that was never sent")
	}
}

// Only the latest Keep messages are kept; the count goes on, and IDs stay
// the order of arrival.
func TestKeepsTheLatest(t *testing.T) {
	t.Parallel()
	s := start(t, capture.Options{Keep: 3})
	c := dial(t, s)
	for i := 1; i <= 7; i++ {
		res := c.Send(context.Background(), &mailer.Message{ID: fmt.Sprintf("m%d", i), From: "a@example.com", To: fmt.Sprintf("r%d@example.com", i), Subject: fmt.Sprintf("n%d", i), Text: "x"})
		if res.Outcome != mailer.Sent {
			t.Fatalf("send %d: %v", i, res)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Wait(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if s.Received() != 7 || s.Kept() != 3 {
		t.Fatalf("received %d, kept %d; want 7, 3", s.Received(), s.Kept())
	}
	var subjects []string
	for _, m := range s.List(0, 0) {
		subjects = append(subjects, fmt.Sprintf("%d:%s", m.ID, m.Subject))
	}
	if got := strings.Join(subjects, " "); got != "7:n7 6:n6 5:n5" {
		t.Errorf("list = %s, want 7:n7 6:n6 5:n5", got)
	}
	if got := s.List(1, 1); len(got) != 1 || got[0].ID != 6 {
		t.Errorf("list(1, 1) = %+v, want message 6", got)
	}
	if got := s.List(5, 10); len(got) != 0 {
		t.Errorf("list past the end = %d messages", len(got))
	}
	var since []int64
	for _, m := range s.Since(5, 0) {
		since = append(since, m.ID)
	}
	if fmt.Sprint(since) != "[6 7]" || len(s.Since(0, 2)) != 2 || s.Since(0, 2)[0].ID != 5 || len(s.Since(7, 0)) != 0 {
		t.Errorf("since(5) = %v; since(0, 2) from 5; since(7) empty", since)
	}
	for id, want := range map[int64]bool{4: false, 5: true, 7: true, 8: false, 0: false} {
		if m, ok := s.Get(id); ok != want || (ok && m.Subject != fmt.Sprintf("n%d", id)) {
			t.Errorf("get(%d): ok %v (%q), want %v", id, ok, m.Subject, want)
		}
	}
}

// A message that is not MIME is kept as received, with the reason; a
// bad recipient is refused; an oversized message is refused and not kept.
func TestOddInput(t *testing.T) {
	t.Parallel()
	s := start(t, capture.Options{MaxMessageBytes: 4096})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("nobody"); err == nil || !strings.Contains(err.Error(), "501") {
		t.Errorf("RCPT TO:<nobody> = %v, want 501", err)
	}
	send := func(body string) error {
		if err := c.Mail("a@example.com"); err != nil {
			return err
		}
		if err := c.Rcpt("b@example.com"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte(body)); err != nil {
			return err
		}
		return w.Close()
	}
	if err := send("Subject: broken\r\nContent-Type: multipart/mixed\r\n\r\nno boundary here\r\n"); err != nil {
		t.Fatal(err)
	}
	m, ok := s.Get(1)
	if !ok || m.Subject != "broken" || m.ParseError == "" || !strings.Contains(string(m.Raw), "no boundary here") {
		t.Errorf("broken message: ok %v, subject %q, parse error %q", ok, m.Subject, m.ParseError)
	}
	if err := send("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 100)); err == nil || !strings.Contains(err.Error(), "552") {
		t.Errorf("oversized message: %v, want 552", err)
	}
	if err := send("Subject: =?iso-8859-1?q?caf=E9?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\nY2Fm6SBjcuhtZQ==\r\n"); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Get(2); !ok || m.Subject != "café" || m.Text != "café crème" {
		t.Errorf("latin-1 message: ok %v, subject %q, text %q, err %q", ok, m.Subject, m.Text, m.ParseError)
	}
	if s.Received() != 2 {
		t.Errorf("received %d, want 2", s.Received())
	}
}
