package bounce_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/bounce"
	"github.com/waymark/waymark/internal/bounce/bouncetest"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// summary writes reports as kind/type email id, one per line.
func summary(rs []bounce.Report) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s %s/%s %s %s %s | %s\n", r.Provider, r.Kind, r.BounceType, r.Email, r.ID, r.At.UTC().Format(time.RFC3339), r.Detail)
	}
	return b.String()
}

// Each provider's documented samples read as the reports they describe.
func TestDocumentedSamplesParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		want string
	}{
		{"ses_bounce_dsn.json", "ses bounce/hard jane@example.com bounce/00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000/jane@example.com 2016-01-27T14:59:38Z | Permanent/General: 5.1.1: smtp; 550 5.1.1 <jane@example.com>... User\n"},
		{"ses_bounce_no_dsn.json", "ses bounce/hard jane@example.com bounce/00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000/jane@example.com 2016-01-27T14:59:38Z | Permanent/General\n" +
			"ses bounce/hard richard@example.com bounce/00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000/richard@example.com 2016-01-27T14:59:38Z | Permanent/General\n"},
		{"ses_complaint.json", "ses complaint/ richard@example.com complaint/000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000/richard@example.com 2016-01-27T14:59:38Z | abuse\n"},
		{"ses_delivery.json", "ses delivery/ jane@example.com delivery/0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000/jane@example.com 2016-01-27T14:59:38Z | 250 ok:  Message 64111812 accepted\n"},
		{"postmark_bounce.json", "postmark bounce/hard john@example.com bounce/4323372036854775807 2019-11-05T16:33:54Z | HardBounce: The server was unable to deliver your message (ex: unknown user, mailbox not found).: Test bounce details\n"},
		{"postmark_spam_complaint.json", "postmark complaint/ john@example.com bounce/42 2019-11-05T16:33:54Z | Test spam complaint details\n"},
		{"postmark_delivery.json", "postmark delivery/ john@example.com delivery/00000000-0000-0000-0000-000000000000/john@example.com 2019-11-05T16:33:54Z | Test delivery webhook details\n"},
		{"sendgrid_events.json", "sendgrid delivery/ example@test.com sg_event_id 2017-12-15T00:59:29Z | 250 OK\n" +
			"sendgrid bounce/hard example@test.com sg_event_id 2017-12-15T00:59:29Z | 5.0.0: 500 unknown recipient\n" +
			"sendgrid complaint/ example@test.com sg_event_id 2017-12-15T00:59:29Z | \n"},
		{"mailgun_failed_permanent.json", "mailgun bounce/hard alice@example.com G9Bn5sl1TC6nu79C8C0bwg 2018-03-16T20:46:35Z | suppress-bounce: 605: Not delivering to previously bounced address\n"},
		{"mailgun_failed_temporary.json", "mailgun bounce/soft alice@example.com Fs7-5t81S2ScMAlPsWyl5Q 2018-03-19T15:11:02Z | generic: 452: 4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.example.com/mail/?p=422\n"},
		{"mailgun_complained.json", "mailgun complaint/ alice@example.com -Agny091SquKnsrW2NEKUA 2018-03-16T20:45:23Z | \n"},
		{"mailgun_delivered.json", "mailgun delivery/ alice@example.com CPgfbmQMTCKtHW6uIWtuVe 2018-03-19T15:11:02Z | 250: OK\n"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			body := fixture(t, tc.file)
			var (
				rs  []bounce.Report
				err error
			)
			switch {
			case strings.HasPrefix(tc.file, "ses_"):
				rs, err = bounce.ParseSES(string(body), "sns-id")
			case strings.HasPrefix(tc.file, "postmark_"):
				rs, err = bounce.ParsePostmark(body)
			case strings.HasPrefix(tc.file, "sendgrid_"):
				rs, err = bounce.ParseSendGrid(body)
			default:
				_, rs, err = bounce.ParseMailgun(body)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(rs); got != tc.want {
				t.Errorf("got\n%swant\n%s", got, tc.want)
			}
		})
	}
}

// SendGrid's own published test vector (its libraries' tests: key,
// payload, timestamp and signature) verifies at its timestamp, and not
// with a changed payload or timestamp, nor long after.
func TestSendGridPublishedVector(t *testing.T) {
	t.Parallel()
	const (
		key       = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
		payload   = `{"category":"example_payload","event":"test_event","message_id":"message_id"}`
		signature = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0="
		timestamp = "1588788367"
	)
	k, err := bounce.ParseSendGridKey(key)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1588788367, 0)
	if err := bounce.VerifySendGrid(k, signature, timestamp, []byte(payload), at.Add(time.Minute), bounce.Tolerance); err != nil {
		t.Fatalf("the published vector: %v", err)
	}
	for name, tc := range map[string]struct {
		sig, ts, body string
		now           time.Time
		want          error
	}{
		"changed payload":   {signature, timestamp, strings.Replace(payload, "test_event", "test_evenT", 1), at, bounce.ErrSignature},
		"changed timestamp": {signature, "1588788368", payload, at, bounce.ErrSignature},
		"an hour later":     {signature, timestamp, payload, at.Add(time.Hour), bounce.ErrStale},
		"no signature":      {"", timestamp, payload, at, bounce.ErrUnsigned},
		"not base64":        {"%%%", timestamp, payload, at, bounce.ErrSignature},
	} {
		if err := bounce.VerifySendGrid(k, tc.sig, tc.ts, []byte(tc.body), tc.now, bounce.Tolerance); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// SNS messages signed with versions 1 and 2 verify with the certificate
// from SNS's host, fetched once; a changed field, an unknown version, a
// certificate URL elsewhere or over http are refused.
func TestSNSSignatures(t *testing.T) {
	t.Parallel()
	sns := bouncetest.NewSNS(t)
	v := sns.Verifier()
	ctx := context.Background()
	for _, version := range []string{"1", "2"} {
		m, err := bounce.ParseSNS(fixture(t, "sns_notification.json"))
		if err != nil {
			t.Fatal(err)
		}
		sns.Sign(t, m, version)
		if err := v.Verify(ctx, m); err != nil {
			t.Fatalf("version %s: %v", version, err)
		}
		changed := *m
		changed.Message = "Hello world?"
		if err := v.Verify(ctx, &changed); !errors.Is(err, bounce.ErrSignature) {
			t.Errorf("version %s, changed message: %v", version, err)
		}
	}
	if n := sns.CertificateFetches(); n != 1 {
		t.Errorf("certificate fetched %d times, want once", n)
	}
	c, err := bounce.ParseSNS(fixture(t, "sns_subscription_confirmation.json"))
	if err != nil {
		t.Fatal(err)
	}
	sns.Sign(t, c, "1")
	if err := v.Verify(ctx, c); err != nil {
		t.Fatalf("subscription confirmation: %v", err)
	}
	if err := v.Confirm(ctx, c); err != nil {
		t.Fatalf("confirming: %v", err)
	}
	if got := sns.Confirmations(); len(got) != 1 || got[0] != c.SubscribeURL {
		t.Errorf("confirmations %q, want %q", got, c.SubscribeURL)
	}
	for _, u := range []string{
		"http://sns.us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
		"https://sns.us-west-2.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
		"https://evil.example/sns.us-west-2.amazonaws.com/x.pem",
		"https://sns.us-west-2.amazonaws.com:8443/SimpleNotificationService-1.pem",
		"https://user@sns.us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
		"https://sns.us-west-2.amazonaws.com/SimpleNotificationService-1.txt",
	} {
		m, _ := bounce.ParseSNS(fixture(t, "sns_notification.json"))
		m.SigningCertURL = u
		sns.Sign(t, m, "2")
		if err := v.Verify(ctx, m); err == nil {
			t.Errorf("certificate from %s accepted", u)
		}
	}
	m, _ := bounce.ParseSNS(fixture(t, "sns_notification.json"))
	sns.Sign(t, m, "3")
	if err := v.Verify(ctx, m); err == nil || errors.Is(err, bounce.ErrUnsigned) {
		t.Errorf("version 3: %v", err)
	}
	m.SignatureVersion, m.Signature = "", ""
	if err := v.Verify(ctx, m); !errors.Is(err, bounce.ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
}

func TestMailgunSignature(t *testing.T) {
	t.Parallel()
	now := time.Unix(1529006854, 0)
	key := "key-test-signing"
	good := bounce.MailgunSignature{Timestamp: "1529006854", Token: "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"}
	good.Signature = bouncetest.MailgunSignature(key, good.Timestamp, good.Token)
	if err := good.Verify(key, now, bounce.Tolerance); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		sig  bounce.MailgunSignature
		key  string
		now  time.Time
		want error
	}{
		"another key":   {good, "key-other", now, bounce.ErrSignature},
		"another token": {bounce.MailgunSignature{good.Timestamp, "x" + good.Token, good.Signature}, key, now, bounce.ErrSignature},
		"stale":         {good, key, now.Add(10 * time.Minute), bounce.ErrStale},
		"unsigned":      {bounce.MailgunSignature{Timestamp: good.Timestamp, Token: good.Token}, key, now, bounce.ErrUnsigned},
	} {
		if err := tc.sig.Verify(tc.key, tc.now, bounce.Tolerance); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestParseMessageID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"<41.1007.abcdefghijklmnop@shop.example>": "41 1007 41.1007.abcdefghijklmnop",
		"41.1007.abcdefghijklmnop@shop.example":   "41 1007 41.1007.abcdefghijklmnop",
		"custom-message-ID":                       "no",
		"<14c5d75ce93.dfd.64b469@ismtpd-555>":     "no",
		"<41.1007.ABCDEFGHIJKLMNOP@shop.example>": "no",
		"<0.1007.abcdefghijklmnop@shop.example>":  "no",
		"<41.1007.abcdefghijklmnop>":              "no",
	} {
		id, ok := bounce.ParseMessageID(in)
		got := "no"
		if ok {
			got = fmt.Sprintf("%d %d %s", id.ContactID, id.SendID, id.Local)
		}
		if got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	if got := bounce.MessageIDsIn("Received: x\r\nMessage-ID: <41.1007.abcdefghijklmnop@shop.example>\r\nSubject: hi"); len(got) != 1 || got[0] != "<41.1007.abcdefghijklmnop@shop.example>" {
		t.Errorf("MessageIDsIn: %q", got)
	}
}
