// Package bounce reads what email relays report back about the emails
// Waymark sent — bounces, complaints and deliveries — in each relay's own
// documented format: Amazon SES through SNS, Postmark, SendGrid's signed
// Event Webhook, Mailgun's signed webhooks, and Waymark's own JSON shape.
// It verifies that a request comes from the relay (SNS message signatures
// with the signing certificate, ECDSA, HMAC, HTTP Basic credentials),
// refuses forged, stale and replayed ones, and turns the rest into
// Reports, which a Store records: the address suppressed for a hard
// bounce or a complaint (or too many soft bounces), an event on the
// contact, the same report counted once.
//
// The package does not touch the database: internal/store implements
// Store.
package bounce

import (
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/waymark/waymark/internal/ingest"
)

// Kind is what a report says happened to an email.
type Kind string

// The kinds of report.
const (
	Bounced    Kind = "bounce"
	Complained Kind = "complaint"
	Delivered  Kind = "delivery"
)

// Bounce types: a hard bounce will not get better (no such mailbox); a
// soft one might (mailbox full, greylisting, a block).
const (
	Hard = "hard"
	Soft = "soft"
)

// Event names a report becomes on its contact, readable by rules
// (count("email_bounced", "30d")).
const (
	EventBounced    = "email_bounced"
	EventComplained = "email_complained"
	EventDelivered  = "email_delivered"
)

// Event is the name of the event a report of kind k becomes.
func (k Kind) Event() string {
	switch k {
	case Bounced:
		return EventBounced
	case Complained:
		return EventComplained
	}
	return EventDelivered
}

// Report is one recipient's outcome of one email, as a relay reported it.
type Report struct {
	// Provider is the relay: "ses", "postmark", "sendgrid", "mailgun" or
	// "waymark".
	Provider string
	// ID identifies the report at the provider: the same report delivered
	// again carries the same ID, and is recorded once.
	ID   string
	Kind Kind
	// BounceType is Hard or Soft for a bounce, "" otherwise.
	BounceType string
	// Email is the recipient, normalised (lower case).
	Email string
	// MessageIDs are the Message-IDs the report gives for the email, as
	// the relay wrote them (with or without angle brackets). One of them
	// may be Waymark's (see ParseMessageID), which ties the report to the
	// send.
	MessageIDs []string
	// At is when the relay says it happened.
	At time.Time
	// Detail is the relay's diagnostic ("smtp; 550 5.1.1 user unknown"),
	// at most MaxDetail bytes.
	Detail string
}

// MaxDetail is the longest diagnostic kept, in bytes.
const MaxDetail = 1000

// Properties are the event's properties (besides those of the send, which
// the store adds): the provider, the bounce type, the diagnostic.
func (r Report) Properties() map[string]any {
	p := map[string]any{"provider": r.Provider}
	if r.Kind == Bounced {
		p["type"] = r.BounceType
	}
	if r.Detail != "" {
		p["diagnostic"] = r.Detail
	}
	return p
}

// MessageID is a Waymark Message-ID taken apart: <CONTACT.SEND.INSTALLATION@domain>.
type MessageID struct {
	ContactID, SendID int64
	// Local is CONTACT.SEND.INSTALLATION, as the send stored it.
	Local string
}

var installationPart = regexp.MustCompile(`^[a-z0-9]{8,32}$`)

// ParseMessageID reads a Waymark Message-ID (with or without angle
// brackets); ok is false for anything else (another sender's, or a
// relay's own id).
func ParseMessageID(s string) (id MessageID, ok bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	local, domain, found := strings.Cut(s, "@")
	if !found || domain == "" {
		return id, false
	}
	parts := strings.Split(local, ".")
	if len(parts) != 3 || !installationPart.MatchString(parts[2]) {
		return id, false
	}
	c, err1 := strconv.ParseInt(parts[0], 10, 64)
	sd, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || c <= 0 || sd <= 0 {
		return id, false
	}
	return MessageID{ContactID: c, SendID: sd, Local: local}, true
}

// WaymarkMessageID returns the first of ids that is a Waymark Message-ID.
func WaymarkMessageID(ids []string) (MessageID, bool) {
	for _, s := range ids {
		if id, ok := ParseMessageID(s); ok {
			return id, true
		}
	}
	return MessageID{}, false
}

// messageIDInText finds Message-IDs in a bounce's raw text (a relay's dump
// of the bounce message, which quotes the original's headers).
var messageIDInText = regexp.MustCompile(`(?i)message-id:\s*(<[^<>\s]{1,250}>)`)

// MessageIDsIn returns the Message-ID header values quoted in text.
func MessageIDsIn(text string) []string {
	var out []string
	for _, m := range messageIDInText.FindAllStringSubmatch(text, 8) {
		out = append(out, m[1])
	}
	return out
}

// address normalises a recipient as a relay gives it: a bare address, or
// one with a display name ("Jane <jane@example.com>").
func address(s string) (string, error) {
	if e, err := ingest.NormalizeEmail(s); err == nil {
		return e, nil
	}
	a, err := mail.ParseAddress(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("%q is not an email address", s)
	}
	return ingest.NormalizeEmail(a.Address)
}

// detail keeps the first MaxDetail bytes of s, without NULs or a split
// character.
func detail(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		p = strings.TrimSpace(strings.ReplaceAll(p, "\x00", ""))
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(p)
	}
	s := strings.ToValidUTF8(b.String(), "")
	if len(s) <= MaxDetail {
		return s
	}
	n := MaxDetail
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
