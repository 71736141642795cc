package campaigns

import (
	"context"
	"errors"
	"time"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/mailer"
	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// What a send is, what the sender reads and records (SendStore), and the
// SMTP connections it sends on (Mailer).

// Due is a claimed send with what deciding about it needs.
type Due struct {
	ID           int64
	ContactID    int64
	EnrolmentID  int64 // 0 for an offer's email
	Sequence     string
	Step         int
	Offer        string
	OfferCode    string
	OfferExpires time.Time
	Template     string
	DueAt        time.Time
	Attempts     int
	// HeldSince is when the holds that keep it waiting began (its due
	// time if it is not held).
	HeldSince time.Time

	// Context, loaded with the claim.
	Email            string
	Subscribed       bool
	Suppressed       string // the suppression's reason, "" if none
	EnrolmentActive  bool
	EnrolmentVersion int
	EnrolledAt       time.Time
	// SentInWindow are the times of the contact's marketing emails within
	// the frequency cap's window, oldest first.
	SentInWindow []time.Time
	// DuplicateOf is another contact with the same address that gets
	// this step's email — sent, on the wire, or queued and first by id
	// — so this one is skipped: one address, one email (0: none).
	DuplicateOf int64
	// A broadcast's email (see broadcast_send.go).
	BroadcastDue
}

// Final is a send that ends without (or after) SMTP.
type Final struct {
	Due    *Due
	Status string // sent, failed, unknown, suppressed, cancelled, skipped, expired
	Detail string // SMTP response or reason
	Recipient,
	MessageID string
	Tone, ToneReason string
	TemplateVersion  int
	At               time.Time
	// Next is the next step to queue in the enrolment, nil if none; End
	// ends the enrolment (completed after its last step, exited when the
	// contact is suppressed).
	Next *NextStep
	End  *Ending
	// Suppress adds the recipient to the suppression list (hard bounce).
	Suppress string
}

// NextStep is the next email of an enrolment.
type NextStep struct {
	Step     int
	Template string
	DueAt    time.Time
}

// Delay puts a due send back to wait, with the reason (hold, cap, quiet
// hours, retry).
type Delay struct {
	Due    *Due
	Until  time.Time
	Reason string
	Retry  bool // counts as an attempt
	// Held: a hold (or a decision that cannot be made now) keeps it; the
	// time it began is kept, for sending: hold_expiry.
	Held bool
}

// SendStore is what the sender needs from storage.
type SendStore interface {
	// ClaimDue claims up to limit queued sends due at now for holder, with
	// their context; capWindow is the frequency cap's window (0: no cap,
	// SentInWindow is left empty).
	// With parts > 1, only the sends of contacts whose id modulo parts is
	// part.
	ClaimDue(ctx context.Context, holder string, limit int, now time.Time, capWindow time.Duration, part, parts int) ([]Due, error)
	LoadFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error)
	// EnrolmentValues computes needs for each enrolment (ID, ContactID and
	// EnrolledAt set: the "enrolment" window starts at EnrolledAt), by ID.
	EnrolmentValues(ctx context.Context, es []Enrolment, needs []rule.Aggregate, asOf time.Time) (map[int64]map[rule.Aggregate]float64, error)
	Templates(ctx context.Context, names []string) (map[string]StoredTemplate, error)
	// JourneyVersion is a digest of the stored journey that changes
	// whenever any of it does, tone rules included: the sender loads and
	// compiles holds and tone rules again only when it changed.
	JourneyVersion(ctx context.Context) (string, error)
	// Definitions returns the journey's campaigns as stored (holds,
	// offers, sending settings, paused sequences).
	Definitions(ctx context.Context) (Definitions, error)
	ToneRules(ctx context.Context) ([]templates.ToneRuleSource, error)
	// Record makes durable, in one transaction, the ends of messages
	// (final states and retries) and the marks of the messages about to
	// be handed to SMTP: marked[i] says whether marks[i] is now on the
	// wire ('sending'), false if it is no longer holder's to send.
	Record(ctx context.Context, holder string, marks []*Due, fs []Final, ds []Delay) (marked []bool, err error)
	Finish(ctx context.Context, fs []Final) error
	Delay(ctx context.Context, ds []Delay) error
	// RecoverInDoubt marks 'unknown' the sends left on the wire by
	// senders that are gone, and releases their other claims.
	RecoverInDoubt(ctx context.Context) (int, error)
	// GiveStepOffer gives the send (a step with `offer:`) the contact's
	// coupon of offer o, stored on the send before it goes on the wire;
	// the same code on every later call. "" when the pool is empty.
	GiveStepOffer(ctx context.Context, d *Due, o Offer, now time.Time) (code string, expires time.Time, err error)
	// Heartbeat keeps holder's liveness lease.
	Heartbeat(ctx context.Context, holder string, ttl time.Duration) error
	// ReleaseClaims releases holder's claims on sends it has not started.
	ReleaseClaims(ctx context.Context, holder string) error
	// HoldPresence makes holder's being alive known to other senders, for
	// as long as its process lives and until release: once it is gone
	// (killed), they release its claims at once instead of waiting for
	// its lease to expire.
	HoldPresence(ctx context.Context, holder string, ttl time.Duration) (release func(), err error)
	// ClaimedElsewhere counts the sends due by now that other senders,
	// still alive, have claimed, and says when the last of their leases
	// runs out if they stop renewing it.
	ClaimedElsewhere(ctx context.Context, holder string, now time.Time) (n int, until time.Time, err error)
}

// StoredTemplate is a template as stored, with its version.
type StoredTemplate struct {
	Template templates.Template
	Version  int
	// Subject is the subject line an A/B test's variant set ("": the
	// template's own); see WithSubject.
	Subject string
}

// Mailer opens SMTP connections; each is used by one goroutine.
type Mailer interface {
	Dial(ctx context.Context) (MailConn, error)
}

// MailConn is one SMTP connection.
type MailConn interface {
	// Begin hands m to the server up to, not including, the final dot of
	// its DATA: the server cannot have accepted it yet. On failure the Tx
	// is nil and the result says why (never sent nor in doubt).
	Begin(ctx context.Context, m *mailer.Message) (MailTx, mailer.Result)
	// Next announces m as the message sent after the open transaction:
	// its commands may go out behind that one's final dot (see
	// mailer.Conn.Next). Begin(m) follows.
	Next(m *mailer.Message)
	Close() error
}

// MailTx is a message on a connection waiting for its final dot.
type MailTx interface {
	// Commit writes the final dot and says what became of the message.
	Commit(ctx context.Context) mailer.Result
	// Abort ends the message without its final dot (the connection is
	// dropped): nothing was accepted.
	Abort()
}

// ErrNoMailer is returned when sending is asked for without an SMTP server.
var ErrNoMailer = errors.New("no SMTP server configured (WAYMARK_SMTP_URL)")
