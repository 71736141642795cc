package bounce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrNoSend is a returned send that is not (or no longer) here.
var ErrNoSend = errors.New("no such send")

// Sends finds a returned email's send: its recipient and its stored
// Message-ID (the local part Waymark wrote), or ErrNoSend.
type Sends interface {
	ReturnedSend(ctx context.Context, contactID, sendID int64) (recipient, messageID string, err error)
}

// InboundConfig is the bounce listener's.
type InboundConfig struct {
	// Addr is where it listens (host:port).
	Addr string
	// VERP reads and checks the return paths it accepts mail for.
	VERP *VERP
	// Sends finds the sends the mail is about; Handler records the
	// reports (as the relays' webhooks do).
	Sends   Sends
	Handler *Handler
	Log     *slog.Logger
	// MaxBytes bounds a returned email (10 MB if 0).
	MaxBytes int64
}

// Inbound is the bounce listener: a small SMTP server that takes the
// delivery status notifications (RFC 3464) mail servers return to the
// emails' VERP return paths, and the abuse reports (ARF, RFC 5965) that
// mailbox providers' feedback loops send to fbl@ the same domain, and
// records each as a report of the send it is about: a hard bounce or a
// complaint suppresses the address, a soft bounce is counted, a delivery
// is noted, the same notice twice counts once. It accepts mail for
// nothing else (it is no relay, and no mailbox): a forged or unknown
// return path is refused at RCPT.
type Inbound struct {
	cfg InboundConfig
	srv *smtp.Server
	ln  net.Listener
}

// FeedbackLocal is the local part feedback loops send ARF reports to.
const FeedbackLocal = "fbl"

// StartInbound listens on cfg.Addr and serves until ctx is done or Close.
func StartInbound(ctx context.Context, cfg InboundConfig) (*Inbound, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 10 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("bounce listener: %w", err)
	}
	in := &Inbound{cfg: cfg, ln: ln}
	in.srv = smtp.NewServer(inboundBackend{in})
	in.srv.Domain = cfg.VERP.Domain()
	in.srv.MaxMessageBytes = cfg.MaxBytes
	in.srv.MaxRecipients = 50
	in.srv.ReadTimeout = time.Minute
	in.srv.WriteTimeout = time.Minute
	go func() {
		if err := in.srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			cfg.Log.Error("bounce listener stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = in.Close()
	}()
	return in, nil
}

// Addr is where the listener listens.
func (in *Inbound) Addr() string { return in.ln.Addr().String() }

// Close stops the listener.
func (in *Inbound) Close() error {
	if err := in.srv.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return err
	}
	return nil
}

type inboundBackend struct{ in *Inbound }

func (b inboundBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &inboundSession{in: b.in}, nil
}

// returned is a send a return path named.
type returned struct{ contactID, sendID int64 }

type inboundSession struct {
	in       *Inbound
	sends    []returned
	feedback bool
}

func (x *inboundSession) Reset()                                    { x.sends, x.feedback = nil, false }
func (x *inboundSession) Logout() error                             { return nil }
func (x *inboundSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (x *inboundSession) AuthPlain(string, string) error            { return smtp.ErrAuthUnsupported }
func (x *inboundSession) Rcpt(to string, _ *smtp.RcptOptions) error { return x.rcpt(to) }

func (x *inboundSession) rcpt(to string) error {
	v := x.in.cfg.VERP
	if c, s, ok := v.Parse(to); ok {
		x.sends = append(x.sends, returned{c, s})
		return nil
	}
	if strings.EqualFold(strings.Trim(to, "<>"), FeedbackLocal+"@"+v.Domain()) {
		x.feedback = true
		return nil
	}
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox: this server takes only bounces to Waymark's return paths"}
}

func (x *inboundSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	log := x.in.cfg.Log
	n, err := ParseNotice(raw)
	if errors.Is(err, ErrNotANotice) {
		// Accepted and dropped: refusing it would have the server return
		// it to its sender, which is us.
		log.Debug("bounce listener: not a notice, dropped", "sends", len(x.sends))
		return nil
	}
	if err != nil {
		log.Warn("bounce listener: a broken report, dropped", "err", err)
		return nil
	}
	kind, bounceType, rcpt, ok := n.Outcome()
	if !ok {
		return nil
	}
	targets := x.sends
	if len(targets) == 0 && x.feedback {
		// A feedback loop's report names the email by the Message-ID of
		// the copy it carries.
		if id, found := WaymarkMessageID(n.Original); found {
			targets = []returned{{id.ContactID, id.SendID}}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var reports []Report
	for _, t := range targets {
		email, mid, err := x.in.cfg.Sends.ReturnedSend(ctx, t.contactID, t.sendID)
		if errors.Is(err, ErrNoSend) {
			continue
		}
		if err != nil {
			return tempFailure(err)
		}
		provider := "dsn"
		if kind == Complained {
			provider = "arf"
		}
		// The address is the send's, whatever the notice names: a notice
		// can only speak for the email its return path (or Message-ID)
		// names.
		reports = append(reports, Report{
			Provider: provider, ID: n.ID + ":" + strconv.FormatInt(t.sendID, 10), Kind: kind, BounceType: bounceType,
			Email: email, MessageIDs: []string{"<" + mid + "@" + x.in.cfg.VERP.Domain() + ">"}, At: n.At,
			Detail: detail(rcpt.Status, rcpt.Diagnostic),
		})
	}
	if len(reports) == 0 {
		return nil
	}
	if _, err := x.in.cfg.Handler.Record(ctx, reports, nil); err != nil {
		return tempFailure(err)
	}
	return nil
}

// tempFailure has the server keep the notice and try again later.
func tempFailure(err error) error {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot record it now, try again later: " + err.Error()}
}
