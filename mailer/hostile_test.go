package mailer_test

import (
	"testing"

	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/mailer"
)

// hostileAddresses hold a character of the categories Cc, Cf, Zl or Zp,
// which went out raw in RCPT TO and To: (issue 23, item 5).
var hostileAddresses = []string{
	"zoe\u2028@customer.example", // line separator (Zl)
	"zoe@customer.example\u2029", // paragraph separator (Zp)
	"zoe@customer\u0085.example", // next line (Cc)
	"\u202Ezoe@customer.example", // right-to-left override (Cf)
	"zo\u200Be@customer.example", // zero-width space (Cf)
	"zoe@customer.exa\u00ADmple", // soft hyphen (Cf)
}

// A message to such an address is refused before SMTP.
func TestInvisibleCharactersInRecipientRefused(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	c := dial(t, srv)
	for _, to := range hostileAddresses {
		if res := send(t, c, message("rcpt", to)); res.Outcome != mailer.PermFail || res.Stage != mailer.StageBuild {
			t.Errorf("Send(%+q) = %v, want refused before SMTP", to, res)
		}
	}
	if srv.Count() != 0 {
		t.Fatalf("the server received %d messages", srv.Count())
	}
}
