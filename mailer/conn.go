package mailer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// Dialer opens Conns to one SMTP server. It is safe for concurrent use.
type Dialer struct {
	cfg  Config
	addr string
	tls  *tls.Config
	dkim *dkimKey
	now  func() time.Time
}

// NewDialer checks cfg and fills in its defaults.
func NewDialer(cfg Config) (*Dialer, error) {
	if cfg.Host == "" {
		return nil, errors.New("mailer: no SMTP host")
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = "starttls"
	case "none", "starttls", "tls":
	default:
		return nil, fmt.Errorf("mailer: TLS %q: want none, starttls or tls", cfg.TLS)
	}
	if cfg.Port == 0 {
		cfg.Port = map[string]int{"none": 25, "starttls": 587, "tls": 465}[cfg.TLS]
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("mailer: port %d out of range", cfg.Port)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = defaultCommandTimeout
	}
	dk, err := parseDKIM(cfg.DKIM)
	if err != nil {
		return nil, fmt.Errorf("mailer: %w", err)
	}
	return &Dialer{
		cfg:  cfg,
		addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		tls: &tls.Config{
			ServerName:         cfg.Host,
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // tests only, documented
		},
		dkim: dk,
		now:  time.Now,
	}, nil
}

// Conn is one persistent SMTP connection (one go-mail Client). It is not
// safe for concurrent use: give each sending goroutine its own. After a
// failure it drops the connection and dials again on the next Send.
type Conn struct {
	d      *Dialer
	client *gomail.Client // dials: greeting, EHLO, STARTTLS, AUTH
	smtp   *smtp.Client   // the connection's session; nil when not connected
	dkim   *gomail.DKIMSigner

	// what the server offers, read after each dial
	pipelining bool
	mailParams string // " BODY=8BITMIME", " SMTPUTF8"

	body   bytes.Buffer // the message being sent, rendered
	signed bytes.Buffer // the same with its DKIM signature, then swapped with body

	// next is the message announced by Next, rendered into body; its
	// commands written once the open transaction's Commit wrote them.
	next *nextMessage

	raw       *deadlineConn // the connection under client; nil when not connected
	connected bool

	// the operation a dial runs under, for the dial function, and its end
	opCtx   context.Context
	opHard  time.Time
	endDial func()
}

// Dial connects to the server (TCP, greeting, EHLO, STARTTLS, AUTH), so
// that a wrong address, a missing STARTTLS or bad credentials show at once.
func (d *Dialer) Dial(ctx context.Context) (*Conn, error) {
	c := &Conn{d: d}
	opts := []gomail.Option{
		gomail.WithPort(d.cfg.Port),
		gomail.WithTimeout(d.cfg.DialTimeout),
		gomail.WithDialContextFunc(c.dialContext),
		gomail.WithTLSConfig(d.tls),
		gomail.WithoutNoop(), // the next command shows a dead connection; Send redials then
		gomail.WithoutRset(), // a finished transaction needs no RSET before the next MAIL
	}
	switch d.cfg.TLS {
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case "starttls":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case "tls":
		// dialContext does the TLS handshake; WithSSL keeps go-mail from
		// trying STARTTLS on top.
		opts = append(opts, gomail.WithSSL())
	}
	if d.cfg.HelloName != "" {
		opts = append(opts, gomail.WithHELO(d.cfg.HelloName))
	}
	if d.cfg.Username != "" {
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthPlain, gomail.SMTPAuthLogin),
			gomail.WithUsername(d.cfg.Username),
			gomail.WithPassword(d.cfg.Password))
	}
	if d.dkim != nil {
		c.dkim = d.dkim.signer()
	}
	client, err := gomail.NewClient(d.cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("mailer: configuring SMTP client: %w", err)
	}
	c.client = client
	if err := c.connect(ctx); err != nil {
		return nil, fmt.Errorf("mailer: dialing %s: %w", d.addr, err)
	}
	return c, nil
}

// dialContext is go-mail's dial function: it puts a deadlineConn under the
// client and, for implicit TLS, does the handshake.
func (c *Conn) dialContext(ctx context.Context, network, _ string) (net.Conn, error) {
	var nd net.Dialer
	tcp, err := nd.DialContext(ctx, network, c.d.addr)
	if err != nil {
		return nil, err
	}
	dc := &deadlineConn{Conn: tcp, idle: c.d.cfg.CommandTimeout}
	// go-mail cancels ctx as soon as the TCP dial returns; the greeting,
	// EHLO, STARTTLS and AUTH run under the dial operation, which connect ends.
	c.endDial = dc.begin(c.opCtx, c.opHard)
	c.raw = dc
	if c.d.cfg.TLS != "tls" {
		return dc, nil
	}
	tc := tls.Client(dc, c.d.tls.Clone())
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// connect dials; on failure the half-open connection is closed (go-mail
// leaves it open when EHLO, STARTTLS or AUTH fail).
func (c *Conn) connect(ctx context.Context) error {
	c.drop()
	c.opCtx, c.opHard = ctx, time.Now().Add(c.d.cfg.DialTimeout)
	defer func() {
		if c.endDial != nil {
			c.endDial()
		}
		c.opCtx, c.opHard, c.endDial = nil, time.Time{}, nil
	}()
	sc, err := c.client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		c.drop()
		if cerr := ctxErr(ctx); cerr != nil {
			return fmt.Errorf("%w: %w", cerr, err)
		}
		return err
	}
	c.smtp = sc
	c.pipelining, _ = sc.Extension("PIPELINING")
	c.mailParams = ""
	if ok, _ := sc.Extension("8BITMIME"); ok {
		c.mailParams += " BODY=8BITMIME"
	}
	if ok, _ := sc.Extension("SMTPUTF8"); ok {
		c.mailParams += " SMTPUTF8"
	}
	c.connected = true
	return nil
}

// drop closes the connection without a goodbye.
func (c *Conn) drop() {
	c.next = nil
	if c.raw != nil {
		_ = c.raw.Conn.Close()
		c.raw = nil
	}
	c.connected = false
	c.smtp = nil
}

// Close says QUIT (waiting at most CommandTimeout) and closes the connection.
func (c *Conn) Close() error {
	if !c.connected || c.next != nil && c.next.written {
		// (After an announced message's DATA the server reads
		// everything as content, a QUIT too: only dropping ends it.)
		c.drop()
		return nil
	}
	end := c.raw.begin(context.Background(), time.Now().Add(c.d.cfg.CommandTimeout))
	err := c.client.CloseWithSMTPClient(c.smtp)
	end()
	c.drop()
	if err != nil {
		return fmt.Errorf("mailer: closing SMTP connection: %w", err)
	}
	return nil
}

// Send sends one message and says what became of it: Begin, then Commit.
// It honours ctx's deadline and cancellation; a server that stalls is cut
// off after CommandTimeout.
func (c *Conn) Send(ctx context.Context, m *Message) Result {
	tx, res := c.Begin(ctx, m)
	if tx == nil {
		return res
	}
	return tx.Commit(ctx)
}

// ctxErr is ctx.Err(), but also reports the deadline as passed when the
// connection's timer, set to the same instant, beat the context's.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}
