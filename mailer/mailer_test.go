package mailer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/mailer"
)

func config(srv *smtptest.Server, mut ...func(*mailer.Config)) mailer.Config {
	cfg := mailer.Config{
		Host:           srv.Host(),
		Port:           srv.Port(),
		TLS:            "none",
		HelloName:      "waymark.test",
		DialTimeout:    5 * time.Second,
		CommandTimeout: 5 * time.Second,
	}
	for _, f := range mut {
		f(&cfg)
	}
	return cfg
}

func dial(t testing.TB, srv *smtptest.Server, mut ...func(*mailer.Config)) *mailer.Conn {
	t.Helper()
	d, err := mailer.NewDialer(config(srv, mut...))
	if err != nil {
		t.Fatalf("NewDialer: %v", err)
	}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func message(id, to string) *mailer.Message {
	return &mailer.Message{
		ID:      id,
		From:    "Waymark Shop <hello@shop.example>",
		To:      to,
		Subject: "Welcome, Zoë",
		Text:    "Hello Zoë,\r\nthanks for joining. " + strings.Repeat("A long line of text. ", 10),
		Headers: [][2]string{
			{"List-Unsubscribe", "<https://shop.example/u/tok123>"},
			{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
			{"X-Waymark-Send", id},
		},
		Date: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
	}
}

func send(t *testing.T, c *mailer.Conn, m *mailer.Message) mailer.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Send(ctx, m)
}

func TestSendBuildsValidMIME(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		html      string
		wantType  string
		wantParts []string
		wantEnd   string // what follows Text in the decoded text part
	}{
		// a single-part body ends with the message's final line break; in
		// multipart that line break belongs to the boundary
		{name: "text only", wantType: "text/plain", wantParts: []string{"text/plain"}, wantEnd: "\r\n"},
		{name: "text and html", html: "<p>Hello Zoë</p>", wantType: "multipart/alternative", wantParts: []string{"text/plain", "text/html"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t)
			c := dial(t, srv)
			m := message("snd-42", "zoe@customer.example")
			m.HTML = tc.html

			res := send(t, c, m)
			if res.Outcome != mailer.Sent || res.Code != 250 || res.Err != nil {
				t.Fatalf("Send = %v, want sent 250", res)
			}
			got := srv.WaitFor(1, 5*time.Second)[0]
			if got.From != "hello@shop.example" || strings.Join(got.To, ",") != "zoe@customer.example" {
				t.Errorf("envelope %s -> %v, want hello@shop.example -> [zoe@customer.example]", got.From, got.To)
			}
			for name, want := range map[string]string{
				"From":                  `"Waymark Shop" <hello@shop.example>`,
				"To":                    "<zoe@customer.example>",
				"Message-ID":            "<snd-42@shop.example>",
				"Date":                  "Wed, 04 Mar 2026 05:06:07 +0000",
				"List-Unsubscribe":      "<https://shop.example/u/tok123>",
				"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
				"X-Waymark-Send":        "snd-42",
				"MIME-Version":          "1.0",
			} {
				if vals := got.Header(name); len(vals) != 1 || vals[0] != want {
					t.Errorf("%s = %q, want exactly [%q]", name, vals, want)
				}
			}
			if subj, err := got.DecodedHeader("Subject"); err != nil || subj != "Welcome, Zoë" || len(got.Header("Subject")) != 1 {
				t.Errorf("Subject = %q (%v), %d fields; want one, Welcome, Zoë", subj, err, len(got.Header("Subject")))
			}
			if ct := got.Header("Content-Type"); len(ct) != 1 || !strings.HasPrefix(ct[0], tc.wantType) {
				t.Errorf("Content-Type = %q, want %s", ct, tc.wantType)
			}
			parts, err := got.Parts()
			if err != nil {
				t.Fatalf("not valid MIME: %v\n%s", err, got.Data)
			}
			if len(parts) != len(tc.wantParts) {
				t.Fatalf("%d parts, want %d", len(parts), len(tc.wantParts))
			}
			for i, p := range parts {
				if p.ContentType != tc.wantParts[i] || p.Params["charset"] != "UTF-8" {
					t.Errorf("part %d is %s charset %q, want %s UTF-8", i, p.ContentType, p.Params["charset"], tc.wantParts[i])
				}
			}
			if string(parts[0].Body) != m.Text+tc.wantEnd {
				t.Errorf("text part = %q, want %q", parts[0].Body, m.Text+tc.wantEnd)
			}
			if tc.html != "" && string(parts[1].Body) != tc.html {
				t.Errorf("html part = %q, want %q", parts[1].Body, tc.html)
			}
		})
	}
}

// A return path is the envelope's sender (where bounces go), and only
// that: the author is still From, and no header names it.
func TestReturnPathIsTheEnvelopeSender(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	c := dial(t, srv)
	m := message("snd-7", "zoe@customer.example")
	m.ReturnPath = "bounces+1.7.abc@bounces.shop.example"
	if res := send(t, c, m); res.Outcome != mailer.Sent {
		t.Fatalf("Send = %v, want sent", res)
	}
	got := srv.WaitFor(1, 5*time.Second)[0]
	if got.From != "bounces+1.7.abc@bounces.shop.example" {
		t.Errorf("MAIL FROM %q, want the return path", got.From)
	}
	if from := got.Header("From"); len(from) != 1 || from[0] != `"Waymark Shop" <hello@shop.example>` {
		t.Errorf("From = %q, want the author", from)
	}
	if strings.Contains(string(got.Data), "bounces+") {
		t.Errorf("the return path is in the message:\n%s", got.Data)
	}
}

type want struct {
	outcome    mailer.Outcome
	code       int
	enhanced   string
	stage      mailer.Stage
	hardBounce bool
}

func TestClassification(t *testing.T) {
	t.Parallel()
	sent := want{outcome: mailer.Sent, code: 250, enhanced: "2.0.0", stage: mailer.StageData}
	for _, tc := range []struct {
		name      string
		opts      []smtptest.Option
		cfg       func(*mailer.Config)
		to        []string // one send each, over one Conn
		want      []want
		wantMsgs  int // messages the server recorded
		wantConns int // connections the server accepted
	}{
		{
			name: "451 twice then accepted",
			opts: []smtptest.Option{smtptest.FailRcpt(func(_ string, attempt int) *gosmtp.SMTPError {
				if attempt <= 2 {
					return smtptest.SMTPError(451, "4.3.0", "try again later")
				}
				return nil
			})},
			to: []string{"a@x.example", "a@x.example", "a@x.example"},
			want: []want{
				{outcome: mailer.TempFail, code: 451, enhanced: "4.3.0", stage: mailer.StageRcpt},
				{outcome: mailer.TempFail, code: 451, enhanced: "4.3.0", stage: mailer.StageRcpt},
				sent,
			},
			wantMsgs: 1, wantConns: 1,
		},
		{
			name: "550 5.1.1 unknown recipient is a hard bounce",
			opts: []smtptest.Option{smtptest.FailRcpt(func(rcpt string, _ int) *gosmtp.SMTPError {
				if rcpt == "gone@x.example" {
					return smtptest.SMTPError(550, "5.1.1", "no such user")
				}
				return nil
			})},
			to: []string{"gone@x.example", "ok@x.example"},
			want: []want{
				{outcome: mailer.PermFail, code: 550, enhanced: "5.1.1", stage: mailer.StageRcpt, hardBounce: true},
				sent,
			},
			wantMsgs: 1, wantConns: 1,
		},
		{
			name: "554 after DATA is permanent but no bounce",
			opts: []smtptest.Option{smtptest.FailData(func(m smtptest.Message, _ int) *gosmtp.SMTPError {
				if m.To[0] == "spam@x.example" {
					return smtptest.SMTPError(554, "5.7.1", "message rejected")
				}
				return nil
			})},
			to: []string{"spam@x.example", "ok@x.example"},
			want: []want{
				{outcome: mailer.PermFail, code: 554, enhanced: "5.7.1", stage: mailer.StageData},
				sent,
			},
			wantMsgs: 1, wantConns: 1,
		},
		{
			name: "452 after DATA is temporary",
			opts: []smtptest.Option{smtptest.FailData(func(m smtptest.Message, _ int) *gosmtp.SMTPError {
				return smtptest.SMTPError(452, "4.3.1", "insufficient storage")
			})},
			to:       []string{"a@x.example"},
			want:     []want{{outcome: mailer.TempFail, code: 452, enhanced: "4.3.1", stage: mailer.StageData}},
			wantMsgs: 0, wantConns: 1,
		},
		{
			name:     "dropped after DATA is unknown",
			opts:     []smtptest.Option{smtptest.DropAfterData()},
			to:       []string{"a@x.example"},
			want:     []want{{outcome: mailer.Unknown, stage: mailer.StageData}},
			wantMsgs: 1, wantConns: 1,
		},
		{
			name: "after a drop the next message goes over a new connection",
			opts: []smtptest.Option{smtptest.DropAfterDataIf(func(m smtptest.Message, _ int) bool {
				return m.To[0] == "first@x.example"
			})},
			to:       []string{"first@x.example", "second@x.example"},
			want:     []want{{outcome: mailer.Unknown, stage: mailer.StageData}, sent},
			wantMsgs: 2, wantConns: 2,
		},
		{
			name:     "no answer to DATA within CommandTimeout is unknown",
			opts:     []smtptest.Option{smtptest.Delay(3 * time.Second)},
			cfg:      func(c *mailer.Config) { c.CommandTimeout = 200 * time.Millisecond },
			to:       []string{"a@x.example"},
			want:     []want{{outcome: mailer.Unknown, stage: mailer.StageData}},
			wantMsgs: 0, wantConns: 1,
		},
		{
			name: "421 to RCPT is temporary and the connection is replaced",
			opts: []smtptest.Option{smtptest.FailRcpt(func(_ string, attempt int) *gosmtp.SMTPError {
				if attempt == 1 {
					return smtptest.SMTPError(421, "4.7.0", "closing")
				}
				return nil
			})},
			to:       []string{"a@x.example", "a@x.example"},
			want:     []want{{outcome: mailer.TempFail, code: 421, enhanced: "4.7.0", stage: mailer.StageRcpt}, sent},
			wantMsgs: 1, wantConns: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, tc.opts...)
			var muts []func(*mailer.Config)
			if tc.cfg != nil {
				muts = append(muts, tc.cfg)
			}
			c := dial(t, srv, muts...)
			for i, to := range tc.to {
				res := send(t, c, message(fmt.Sprintf("s%d", i), to))
				w := tc.want[i]
				got := want{res.Outcome, res.Code, res.Enhanced, res.Stage, res.HardBounce()}
				if got != w {
					t.Errorf("send %d to %s: got %+v (%v), want %+v", i, to, got, res, w)
				}
				if (res.Outcome == mailer.Sent) != (res.Err == nil) {
					t.Errorf("send %d: outcome %v with Err %v", i, res.Outcome, res.Err)
				}
			}
			// the server may still be storing the last message
			if tc.wantMsgs > 0 {
				srv.WaitFor(tc.wantMsgs, 5*time.Second)
			}
			if srv.Count() != tc.wantMsgs || srv.Connections() != tc.wantConns {
				t.Errorf("server has %d messages over %d connections, want %d over %d",
					srv.Count(), srv.Connections(), tc.wantMsgs, tc.wantConns)
			}
		})
	}
}

func TestDeadConnectionIsRedialedBeforeSending(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	c := dial(t, srv)
	if res := send(t, c, message("a", "a@x.example")); res.Outcome != mailer.Sent {
		t.Fatalf("first send: %v", res)
	}
	srv.WaitFor(1, 5*time.Second)
	srv.DropConnections()
	if res := send(t, c, message("b", "b@x.example")); res.Outcome != mailer.Sent {
		t.Fatalf("send after the server dropped the idle connection: %v, want sent", res)
	}
	if srv.Count() != 2 || srv.Connections() != 2 {
		t.Errorf("server has %d messages over %d connections, want 2 over 2", srv.Count(), srv.Connections())
	}
}

func TestServerGoneIsTempFail(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	c := dial(t, srv)
	srv.Close() // listener and connections closed: the redial is refused
	res := send(t, c, message("a", "a@x.example"))
	if res.Outcome != mailer.TempFail || res.Stage != mailer.StageConnect || res.Code != 0 {
		t.Errorf("Send = %v, want tempfail at connect", res)
	}
	if srv.Count() != 0 {
		t.Errorf("server has %d messages, want 0", srv.Count())
	}
}

func TestContextDeadlineWhileWaitingForAnswerIsUnknown(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Delay(3*time.Second))
	c := dial(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := c.Send(ctx, message("a", "a@x.example"))
	if res.Outcome != mailer.Unknown || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("Send = %v, want unknown with context.DeadlineExceeded", res)
	}
}

func TestCancelledContextSendsNothing(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	c := dial(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := c.Send(ctx, message("a", "a@x.example"))
	if res.Outcome != mailer.TempFail || !errors.Is(res.Err, context.Canceled) {
		t.Errorf("Send = %v, want tempfail with context.Canceled", res)
	}
	if res := send(t, c, message("b", "b@x.example")); res.Outcome != mailer.Sent {
		t.Errorf("next Send = %v, want sent", res)
	}
	if srv.Count() != 1 {
		t.Errorf("server has %d messages, want 1", srv.Count())
	}
}

func TestNeverGreet(t *testing.T) {
	t.Parallel()

	t.Run("Dial fails within DialTimeout", func(t *testing.T) {
		t.Parallel()
		srv := smtptest.Start(t, smtptest.NeverGreet())
		d, err := mailer.NewDialer(config(srv, func(c *mailer.Config) { c.DialTimeout = 300 * time.Millisecond }))
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Dial(context.Background())
		if err == nil {
			c.Close()
			t.Fatal("Dial to a server that never greets succeeded")
		}
	})

	t.Run("Dial honours the context", func(t *testing.T) {
		t.Parallel()
		srv := smtptest.Start(t, smtptest.NeverGreet())
		d, err := mailer.NewDialer(config(srv, func(c *mailer.Config) { c.DialTimeout = time.Minute; c.CommandTimeout = time.Minute }))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := d.Dial(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial = %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("redial to a silent server is a tempfail and does not hold up another Conn", func(t *testing.T) {
		t.Parallel()
		// The first connection takes a message and drops; every later one
		// is never greeted.
		silent := smtptest.Start(t,
			smtptest.NeverGreetIf(func(n int) bool { return n > 1 }),
			smtptest.DropAfterData())
		healthy := smtptest.Start(t)
		stuck := dial(t, silent, func(c *mailer.Config) { c.DialTimeout = 2 * time.Second })
		fine := dial(t, healthy)

		if res := send(t, stuck, message("a", "a@x.example")); res.Outcome != mailer.Unknown {
			t.Fatalf("first send: %v, want unknown", res)
		}

		var stuckDone atomic.Bool
		var wg sync.WaitGroup
		wg.Add(1)
		var stuckRes mailer.Result
		go func() {
			defer wg.Done()
			stuckRes = stuck.Send(context.Background(), message("b", "b@x.example"))
			stuckDone.Store(true)
		}()
		for i := range 5 {
			if res := send(t, fine, message(fmt.Sprintf("h%d", i), "h@x.example")); res.Outcome != mailer.Sent {
				t.Errorf("healthy send %d: %v", i, res)
			}
		}
		if stuckDone.Load() {
			t.Errorf("the silent server's dial ended before the healthy Conn's five sends: it should wait its DialTimeout")
		}
		wg.Wait()
		if stuckRes.Outcome != mailer.TempFail || stuckRes.Stage != mailer.StageConnect {
			t.Errorf("send over a redial to a silent server: %v, want tempfail at connect", stuckRes)
		}
		if healthy.Count() != 5 {
			t.Errorf("healthy server has %d messages, want 5", healthy.Count())
		}
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		user, pass string
		wantDial   bool
		want       want
	}{
		{name: "right credentials", user: "u", pass: "secret", wantDial: true,
			want: want{outcome: mailer.Sent, code: 250, enhanced: "2.0.0", stage: mailer.StageData}},
		{name: "wrong password", user: "u", pass: "nope", wantDial: false},
		{name: "no credentials", wantDial: true,
			want: want{outcome: mailer.PermFail, code: 530, enhanced: "5.7.0", stage: mailer.StageMail}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, smtptest.RequireAuth("u", "secret"))
			d, err := mailer.NewDialer(config(srv, func(c *mailer.Config) { c.Username, c.Password = tc.user, tc.pass }))
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.Dial(context.Background())
			if (err == nil) != tc.wantDial {
				t.Fatalf("Dial error = %v, want success %v", err, tc.wantDial)
			}
			if err != nil {
				return
			}
			defer c.Close()
			res := send(t, c, message("a", "a@x.example"))
			got := want{res.Outcome, res.Code, res.Enhanced, res.Stage, res.HardBounce()}
			if got != tc.want {
				t.Errorf("Send = %+v (%v), want %+v", got, res, tc.want)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert := smtptest.SelfSignedCert(t)
	for _, tc := range []struct {
		name     string
		opts     []smtptest.Option
		cfg      func(*mailer.Config)
		wantDial string // "" for success, else a substring of the error
	}{
		{
			name: "starttls with auth",
			opts: []smtptest.Option{smtptest.StartTLS(cert), smtptest.RequireAuth("u", "p")},
			cfg: func(c *mailer.Config) {
				c.TLS, c.InsecureSkipVerify, c.Username, c.Password = "starttls", true, "u", "p"
			},
		},
		{
			name:     "starttls asked but not offered: no downgrade",
			cfg:      func(c *mailer.Config) { c.TLS, c.InsecureSkipVerify = "starttls", true },
			wantDial: "STARTTLS",
		},
		{
			name:     "starttls with an unverifiable certificate",
			opts:     []smtptest.Option{smtptest.StartTLS(cert)},
			cfg:      func(c *mailer.Config) { c.TLS = "starttls" },
			wantDial: "certificate",
		},
		{
			name: "implicit tls",
			opts: []smtptest.Option{smtptest.ImplicitTLS(cert), smtptest.RequireAuth("u", "p")},
			cfg: func(c *mailer.Config) {
				c.TLS, c.InsecureSkipVerify, c.Username, c.Password = "tls", true, "u", "p"
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, tc.opts...)
			d, err := mailer.NewDialer(config(srv, tc.cfg))
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.Dial(context.Background())
			if tc.wantDial != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantDial) {
					t.Fatalf("Dial = %v, want an error about %s", err, tc.wantDial)
				}
				if srv.Count() != 0 {
					t.Errorf("server got %d messages, want 0", srv.Count())
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if res := send(t, c, message("a", "a@x.example")); res.Outcome != mailer.Sent {
				t.Fatalf("Send = %v, want sent", res)
			}
			if res := send(t, c, message("b", "b@x.example")); res.Outcome != mailer.Sent {
				t.Fatalf("second Send = %v, want sent", res)
			}
			if srv.Connections() != 1 {
				t.Errorf("%d connections, want 1", srv.Connections())
			}
		})
	}
}

func TestHeaderInjection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		mut         func(*mailer.Message)
		wantInvalid bool
	}{
		{name: "CRLF in Subject", mut: func(m *mailer.Message) { m.Subject = "Hi\r\nBcc: evil@attacker.example\r\nX-Evil: 1" }},
		{name: "bare LF in Subject", mut: func(m *mailer.Message) { m.Subject = "Hi\nBcc: evil@attacker.example" }},
		{name: "CRLF in To", mut: func(m *mailer.Message) { m.To = "zoe@customer.example\r\nBcc: evil@attacker.example" }, wantInvalid: true},
		{name: "two addresses in To", mut: func(m *mailer.Message) { m.To = "zoe@customer.example, evil@attacker.example" }, wantInvalid: true},
		{name: "CRLF in From name", mut: func(m *mailer.Message) { m.From = "\"Shop\r\nBcc: evil@attacker.example\" <hello@shop.example>" }, wantInvalid: true},
		{name: "header syntax in a quoted From name", mut: func(m *mailer.Message) { m.From = "\"Shop: Bcc: evil@attacker.example\" <hello@shop.example>" }},
		{name: "CRLF in a header value", mut: func(m *mailer.Message) {
			m.Headers = append(m.Headers, [2]string{"X-Campaign", "x\r\nBcc: evil@attacker.example"})
		}, wantInvalid: true},
		{name: "CRLF in a header name", mut: func(m *mailer.Message) {
			m.Headers = append(m.Headers, [2]string{"X-A: 1\r\nBcc", "evil@attacker.example"})
		}, wantInvalid: true},
		{name: "Bcc as an extra header", mut: func(m *mailer.Message) {
			m.Headers = append(m.Headers, [2]string{"bcc", "evil@attacker.example"})
		}, wantInvalid: true},
		{name: "second From as an extra header", mut: func(m *mailer.Message) {
			m.Headers = append(m.Headers, [2]string{"From", "evil@attacker.example"})
		}, wantInvalid: true},
		{name: "CRLF in Reply-To", mut: func(m *mailer.Message) {
			m.Headers = append(m.Headers, [2]string{"Reply-To", "a@shop.example\r\nBcc: evil@attacker.example"})
		}, wantInvalid: true},
		{name: "control characters in Subject", mut: func(m *mailer.Message) { m.Subject = "Hi\x00\x0bBcc: evil@attacker.example" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t)
			c := dial(t, srv)
			m := message("inj", "zoe@customer.example")
			tc.mut(m)
			res := send(t, c, m)
			if tc.wantInvalid {
				if res.Outcome != mailer.PermFail || !errors.Is(res.Err, mailer.ErrInvalidMessage) || res.Stage != mailer.StageBuild {
					t.Fatalf("Send = %v, want permfail ErrInvalidMessage at build", res)
				}
				if srv.Connections() != 1 || srv.Count() != 0 {
					t.Errorf("server: %d messages, %d connections; want 0, 1", srv.Count(), srv.Connections())
				}
				return
			}
			if res.Outcome != mailer.Sent {
				t.Fatalf("Send = %v, want sent", res)
			}
			got := srv.WaitFor(1, 5*time.Second)[0]
			if strings.Join(got.To, ",") != "zoe@customer.example" {
				t.Errorf("envelope recipients %v, want only zoe@customer.example", got.To)
			}
			counts := map[string]int{}
			for _, n := range got.HeaderNames() {
				counts[strings.ToLower(n)]++
			}
			for _, name := range []string{"from", "to", "subject", "message-id", "date"} {
				if counts[name] != 1 {
					t.Errorf("%d %s fields, want 1\n%s", counts[name], name, got.Data)
				}
			}
			for _, name := range []string{"bcc", "cc", "x-evil"} {
				if counts[name] != 0 {
					t.Errorf("injected %s field\n%s", name, got.Data)
				}
			}
			if _, err := got.Parts(); err != nil {
				t.Errorf("not valid MIME: %v", err)
			}
		})
	}
}

func TestInvalidMessages(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	c := dial(t, srv)
	for _, tc := range []struct {
		name string
		mut  func(*mailer.Message)
	}{
		{"empty id", func(m *mailer.Message) { m.ID = "" }},
		{"id with a space", func(m *mailer.Message) { m.ID = "a b" }},
		{"id with angle bracket", func(m *mailer.Message) { m.ID = "a>b" }},
		{"no text", func(m *mailer.Message) { m.Text = "" }},
		{"From without domain", func(m *mailer.Message) { m.From = "Shop <hello>" }},
		{"empty To", func(m *mailer.Message) { m.To = "" }},
		{"return path with a line break", func(m *mailer.Message) { m.ReturnPath = "b@shop.example\r\nRCPT TO:<x@evil.example>" }},
		{"return path not an address", func(m *mailer.Message) { m.ReturnPath = "bounces" }},
		{"return path with a hidden character", func(m *mailer.Message) { m.ReturnPath = "boun\u200bces@shop.example" }},
	} {
		m := message("ok", "zoe@customer.example")
		tc.mut(m)
		if res := send(t, c, m); res.Outcome != mailer.PermFail || !errors.Is(res.Err, mailer.ErrInvalidMessage) {
			t.Errorf("%s: Send = %v, want permfail ErrInvalidMessage", tc.name, res)
		}
	}
	if res := send(t, c, message("ok", "zoe@customer.example")); res.Outcome != mailer.Sent {
		t.Errorf("valid message after invalid ones: %v", res)
	}
}

func TestNewDialerRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  mailer.Config
	}{
		{"no host", mailer.Config{}},
		{"unknown tls", mailer.Config{Host: "h", TLS: "maybe"}},
		{"bad port", mailer.Config{Host: "h", Port: 70000}},
		{"dkim without key", mailer.Config{Host: "h", DKIM: &mailer.DKIMConfig{Domain: "d", Selector: "s"}}},
	} {
		if _, err := mailer.NewDialer(tc.cfg); err == nil {
			t.Errorf("%s: NewDialer accepted %+v", tc.name, tc.cfg)
		}
	}
}

func TestConcurrentConns(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	d, err := mailer.NewDialer(config(srv, func(c *mailer.Config) { c.DKIM = dkimConfig(t, "ed25519") }))
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.Dial(context.Background())
			if err != nil {
				t.Errorf("Dial: %v", err)
				return
			}
			defer c.Close()
			for i := range each {
				if res := c.Send(context.Background(), message(fmt.Sprintf("w%d-%d", w, i), "a@x.example")); res.Outcome != mailer.Sent {
					t.Errorf("worker %d send %d: %v", w, i, res)
				}
			}
		}()
	}
	wg.Wait()
	if srv.Count() != workers*each || srv.Connections() != workers {
		t.Errorf("server has %d messages over %d connections, want %d over %d", srv.Count(), srv.Connections(), workers*each, workers)
	}
}

func BenchmarkSend(b *testing.B) {
	for _, kind := range []string{"plain", "rsa-pkcs8", "ed25519"} {
		b.Run(kind, func(b *testing.B) {
			srv := smtptest.Start(b)
			d, err := mailer.NewDialer(config(srv, func(c *mailer.Config) {
				if kind != "plain" {
					c.DKIM = dkimConfig(b, kind)
				}
			}))
			if err != nil {
				b.Fatal(err)
			}
			c, err := d.Dial(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			m := message("bench", "a@x.example")
			m.HTML = "<p>" + strings.Repeat("Hello there. ", 200) + "</p>"
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				m.ID = fmt.Sprintf("bench-%d", i)
				if res := c.Send(ctx, m); res.Outcome != mailer.Sent {
					b.Fatalf("Send: %v", res)
				}
			}
		})
	}
}

// A message begun but aborted before its final dot is not accepted; the
// connection is replaced for the next one.
func TestAbortBeforeTheFinalDotSendsNothing(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	c := dial(t, srv)
	tx, res := c.Begin(context.Background(), message("a", "a@x.example"))
	if tx == nil {
		t.Fatalf("Begin: %v", res)
	}
	tx.Abort()
	if res := send(t, c, message("b", "b@x.example")); res.Outcome != mailer.Sent {
		t.Fatalf("send after an abort: %v, want sent", res)
	}
	msgs := srv.WaitFor(1, 5*time.Second)
	time.Sleep(100 * time.Millisecond) // an accepted "a" would be recorded by now
	if srv.Count() != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "b@x.example" {
		t.Errorf("server has %d messages (%v), want only b's", srv.Count(), msgs)
	}
	if srv.Connections() != 2 {
		t.Errorf("server saw %d connections, want 2 (the aborted one dropped)", srv.Connections())
	}
}

// A message announced with Next has its MAIL FROM, RCPT TO and DATA
// written behind the last message's final dot; each message is still
// accepted or refused on its own, and only after its own dot: a refused
// message between two accepted ones, over one connection. An announced
// message that is not begun, or another begun in its place, leaves
// nothing behind: the connection is dropped (its DATA had no content).
func TestNextRidesOnTheLastDot(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.FailData(func(m smtptest.Message, _ int) *gosmtp.SMTPError {
		if m.To[0] == "spam@x.example" {
			return smtptest.SMTPError(554, "5.7.1", "message rejected")
		}
		return nil
	}))
	c := dial(t, srv)
	ctx := context.Background()
	msgs := []*mailer.Message{message("a", "a@x.example"), message("b", "spam@x.example"), message("c", "c@x.example"),
		message("d", "d@x.example"), message("e", "e@x.example")}
	want := []mailer.Outcome{mailer.Sent, mailer.PermFail, mailer.Sent}
	tx, res := c.Begin(ctx, msgs[0])
	for i, w := range want {
		if tx == nil {
			t.Fatalf("Begin %s: %v", msgs[i].ID, res)
		}
		c.Next(msgs[i+1])
		if res := tx.Commit(ctx); res.Outcome != w {
			t.Fatalf("message %s: %v, want %v", msgs[i].ID, res, w)
		}
		if i+1 < len(want) {
			tx, res = c.Begin(ctx, msgs[i+1])
		}
	}
	// d was announced (its commands are out) but e is begun instead.
	if res := send(t, c, msgs[4]); res.Outcome != mailer.Sent {
		t.Fatalf("e after an announced d: %v", res)
	}
	got := srv.WaitFor(3, 5*time.Second)
	time.Sleep(100 * time.Millisecond) // a stray d would be recorded by now
	var to []string
	for _, m := range srv.Messages() {
		to = append(to, m.To...)
		if !strings.Contains(string(m.Data), "X-Waymark-Send: "+strings.TrimSuffix(m.To[0], "@x.example")) {
			t.Errorf("message to %s carries another message's content:\n%s", m.To[0], m.Data)
		}
	}
	if strings.Join(to, " ") != "a@x.example c@x.example e@x.example" || len(got) != 3 {
		t.Errorf("server has messages to %v, want a, c and e", to)
	}
	if srv.Connections() != 2 {
		t.Errorf("server saw %d connections, want 2 (one until d was left announced)", srv.Connections())
	}
}
