package campaigns

import (
	"context"

	"github.com/waymark/waymark/mailer"
)

// SMTP returns the Mailer that sends through d: a mailer.Dialer's
// connections, seen as MailConns.
func SMTP(d *mailer.Dialer) Mailer { return smtpMailer{d} }

// smtpMailer adapts mailer.Dialer to Mailer.
type smtpMailer struct{ d *mailer.Dialer }

func (m smtpMailer) Dial(ctx context.Context) (MailConn, error) {
	c, err := m.d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return smtpConn{c}, nil
}

// smtpConn adapts mailer.Conn to MailConn.
type smtpConn struct{ *mailer.Conn }

func (c smtpConn) Begin(ctx context.Context, m *mailer.Message) (MailTx, mailer.Result) {
	tx, res := c.Conn.Begin(ctx, m)
	if tx == nil {
		return nil, res
	}
	return tx, res
}
