// Package mailer hands emails to an SMTP server over persistent
// connections and says, for every message, what became of it: sent, to be
// retried, refused for good, or in doubt.
//
// The outcome is what the send queue's exactly-once promise rests on
// (see "How data flows" in the design): a message is Unknown only when its
// whole content, final dot included, was written to the server and the
// server's answer was never heard. It is then not resent, so a lost
// connection can never duplicate an email; at most one message per
// connection can be in that state at a time.
package mailer

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Message is one email ready to send.
type Message struct {
	// ID is the send's id. The Message-ID is derived from it as
	// <ID@domain-of-From>, so a receiver can tell a resend from a new
	// email; the sender makes it globally unique (RFC 5322, 3.6.4) by
	// adding its installation's id. It must be a dot-atom (letters,
	// digits, "-", "_", "."...).
	ID string
	// From is the author, "Name <addr>" or a bare address; it is also the
	// envelope sender unless ReturnPath is set.
	From string
	// ReturnPath, if set, is the envelope sender (MAIL FROM), a bare
	// address: where bounces go (a VERP address naming the send, so a
	// bounce returned to it says which send it is about).
	ReturnPath string
	// To is the one recipient, a bare address.
	To string
	// Subject is a single line; line breaks in it are folded into spaces.
	Subject string
	// Text is the text/plain body, always present.
	Text string
	// HTML is the optional text/html alternative; when set the message is
	// multipart/alternative.
	HTML string
	// Headers are extra header fields, e.g. List-Unsubscribe,
	// List-Unsubscribe-Post, X-Waymark-Send. Fields that the message
	// sets itself (From, To, Subject, Date, Message-ID, MIME and DKIM
	// fields, Cc, Bcc...) are refused; Reply-To is checked as an address.
	// Repeated names are joined into one field. A value may not contain a
	// line break.
	Headers [][2]string
	// Date is the Date header; the zero time means now.
	Date time.Time
}

// Outcome is what became of a message. The zero value is not an outcome.
type Outcome uint8

const (
	// Sent: the server accepted the message (250 after DATA).
	Sent Outcome = iota + 1
	// TempFail: not delivered, retry later. A 4xx answer, or the
	// connection failed before the whole message was handed over.
	TempFail
	// PermFail: refused for good (5xx, or a message that cannot be built);
	// do not retry.
	PermFail
	// Unknown: the connection was lost, or the time ran out, after the
	// whole message was handed over and before the server answered. The
	// server may have accepted it: do not resend.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Sent:
		return "sent"
	case TempFail:
		return "tempfail"
	case PermFail:
		return "permfail"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Stage is the step of the SMTP conversation at which a send ended.
type Stage uint8

const (
	StageBuild   Stage = iota + 1 // building the message, before any network I/O
	StageConnect                  // dial, greeting, EHLO, STARTTLS, AUTH
	StageMail                     // MAIL FROM
	StageRcpt                     // RCPT TO
	StageData                     // DATA, the content, and the answer to it
)

func (s Stage) String() string {
	switch s {
	case StageBuild:
		return "build"
	case StageConnect:
		return "connect"
	case StageMail:
		return "mail"
	case StageRcpt:
		return "rcpt"
	case StageData:
		return "data"
	}
	return fmt.Sprintf("Stage(%d)", uint8(s))
}

// Result is what Conn.Send reports for one message.
type Result struct {
	Outcome  Outcome
	Code     int    // the server's reply code (250, 451, 550...); 0 when it never answered
	Enhanced string // RFC 3463 enhanced status code, e.g. "5.1.1", when the server gave one
	Response string // the server's reply text, without the code
	Stage    Stage  // where the send ended
	Err      error  // nil when Sent
}

// HardBounce reports whether the recipient's address is bad: a permanent
// failure with an RFC 3463 addressing status (5.1.x) about the recipient,
// given to RCPT TO or, with one recipient, after DATA. Sender-side
// addressing codes (5.1.7, 5.1.8) and 5xx answers to MAIL FROM are not
// bounces: they say nothing about the contact.
func (r Result) HardBounce() bool {
	if r.Outcome != PermFail || (r.Stage != StageRcpt && r.Stage != StageData) {
		return false
	}
	if !strings.HasPrefix(r.Enhanced, "5.1.") {
		return false
	}
	return r.Enhanced != "5.1.7" && r.Enhanced != "5.1.8"
}

func (r Result) String() string {
	s := r.Outcome.String()
	if r.Code != 0 {
		s += fmt.Sprintf(" %d", r.Code)
	}
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	if r.Stage != 0 {
		s += " at " + r.Stage.String()
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// ErrInvalidMessage is wrapped by the Err of a PermFail result for a
// message that cannot be built (bad address, bad ID, forbidden header...).
var ErrInvalidMessage = errors.New("invalid message")

// Config says how to reach and talk to the SMTP server.
type Config struct {
	Host     string
	Port     int // 0: 25 for "none", 587 for "starttls", 465 for "tls"
	Username string
	Password string // AUTH PLAIN or LOGIN; credentials are only sent over TLS or to localhost
	// TLS is "none", "starttls" (the default) or "tls" (implicit, SMTPS).
	// "starttls" is mandatory: a server that does not offer it is an error,
	// never a silent downgrade to plain text.
	TLS string
	// HelloName is the EHLO name; empty means the host name.
	HelloName string
	// DialTimeout bounds connecting: TCP, greeting, EHLO, TLS and AUTH
	// together. Default 15s.
	DialTimeout time.Duration
	// CommandTimeout cuts off a server that stalls: it is the longest
	// the connection may wait on any one read or write. Default 60s.
	CommandTimeout time.Duration
	// InsecureSkipVerify skips certificate verification. Tests only.
	InsecureSkipVerify bool
	// DKIM signs every message when set.
	DKIM *DKIMConfig
}

const (
	defaultDialTimeout    = 15 * time.Second
	defaultCommandTimeout = 60 * time.Second
)
