package bounce

import (
	"context"
	"crypto/ecdsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"
)

// Store records reports.
type Store interface {
	// RecordReports records rs in one transaction: each report once (by
	// provider and ID; a report seen before changes nothing), an event
	// on its contact (the send its Message-ID names, or the contacts of
	// its address), the address suppressed for a hard bounce, a
	// complaint, or a soft bounce that makes opts.SoftLimit within
	// opts.SoftWindow, with its queued sends cancelled and its active
	// enrolments ended. With opts.Nonce set, the nonce is recorded in
	// the same transaction, and ErrReplayed returned (nothing recorded)
	// if it was seen before.
	RecordReports(ctx context.Context, rs []Report, opts RecordOptions) (Recorded, error)
}

// RecordOptions tell RecordReports what else to do.
type RecordOptions struct {
	SoftLimit  int           // soft bounces that suppress an address (0: never)
	SoftWindow time.Duration // ...within this long
	Now        time.Time
	Nonce      *Nonce
}

// Nonce is a signed request's one-time value (Mailgun's token), remembered
// until Expires.
type Nonce struct {
	Provider, Value string
	Expires         time.Time
}

// ErrReplayed is what RecordReports returns for a nonce it saw before.
var ErrReplayed = errors.New("replayed request")

// ErrStale is returned for a signed request whose timestamp is too far
// from now.
var ErrStale = errors.New("stale request")

// Recorded says what RecordReports did.
type Recorded struct {
	New        int // reports recorded
	Duplicates int // reports seen before, left alone
	Suppressed int // addresses suppressed by these reports
	Cancelled  int // queued sends cancelled
	Events     []Event
}

// Event is an event RecordReports stored on a contact.
type Event struct {
	ContactID  int64
	Name       string
	Properties map[string]any
	At         time.Time
}

// Defaults of the soft-bounce policy and of signed requests' freshness.
const (
	DefaultSoftLimit  = 3
	DefaultSoftWindow = 30 * 24 * time.Hour
	// Tolerance is how far a signed timestamp (SendGrid, Mailgun) may be
	// from now, either way.
	Tolerance = 5 * time.Minute
	// maxBody bounds a request: SendGrid batches many events in one.
	maxBody = 4 << 20
)

// Config is what the Handler runs on. A provider whose secret is not set
// is off: its endpoint answers 404 saying which variable turns it on.
type Config struct {
	Store Store
	Log   *slog.Logger
	Now   func() time.Time
	// SESTopics are the SNS topic ARNs whose messages are accepted (and
	// whose subscriptions are confirmed): anyone can create a topic and
	// sign with SNS's certificate, so the topic is what says it is yours.
	SESTopics []string
	// SNS verifies SNS signatures; one with http.DefaultClient if nil.
	SNS *SNSVerifier
	// PostmarkUser and PostmarkPassword are the HTTP Basic credentials
	// Postmark's webhook URL carries.
	PostmarkUser, PostmarkPassword string
	// SendGridKey is the Signed Event Webhook's verification key.
	SendGridKey *ecdsa.PublicKey
	// MailgunKey is Mailgun's webhook signing key.
	MailgunKey string
	// SoftLimit soft bounces within SoftWindow suppress an address
	// (DefaultSoftLimit, DefaultSoftWindow if 0; a negative limit: never).
	SoftLimit  int
	SoftWindow time.Duration
	// OnEvent, if set, is called for each event stored (to let rules
	// react at once).
	OnEvent func(contactID int64, name string, props map[string]any, at time.Time)
}

// Handler serves the providers' webhooks:
//
//	POST /v1/webhooks/ses       Amazon SES through SNS (signed by SNS)
//	POST /v1/webhooks/postmark  Postmark (HTTP Basic credentials)
//	POST /v1/webhooks/sendgrid  SendGrid's Signed Event Webhook (ECDSA)
//	POST /v1/webhooks/mailgun   Mailgun (HMAC, timestamp, one-time token)
//
// A request that is not signed or authenticated is refused with 401, one
// whose signature or credentials are wrong, stale or replayed with 403,
// before anything is read into the database. Answers are JSON.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// NewHandler returns the handler on cfg.
func NewHandler(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SNS == nil {
		cfg.SNS = &SNSVerifier{}
	}
	if cfg.SNS.Now == nil {
		cfg.SNS.Now = cfg.Now
	}
	if cfg.SoftLimit == 0 {
		cfg.SoftLimit = DefaultSoftLimit
	}
	if cfg.SoftWindow <= 0 {
		cfg.SoftWindow = DefaultSoftWindow
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /v1/webhooks/ses", h.ses)
	h.mux.HandleFunc("POST /v1/webhooks/postmark", h.postmark)
	h.mux.HandleFunc("POST /v1/webhooks/sendgrid", h.sendgrid)
	h.mux.HandleFunc("POST /v1/webhooks/mailgun", h.mailgun)
	return h
}

// Patterns are the handler's routes, to mount it on another mux.
func (h *Handler) Patterns() []string {
	return []string{"POST /v1/webhooks/ses", "POST /v1/webhooks/postmark", "POST /v1/webhooks/sendgrid", "POST /v1/webhooks/mailgun"}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// answer is the JSON body of every answer.
type answer struct {
	Success    bool   `json:"success"`
	Error      string `json:"error,omitempty"`
	Field      string `json:"field,omitempty"`
	Reports    int    `json:"reports"`
	Recorded   int    `json:"recorded"`
	Duplicates int    `json:"duplicates"`
	Suppressed int    `json:"suppressed"`
}

func reply(w http.ResponseWriter, status int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(a)
}

// refuse answers a request that is not the provider's: 401 when it
// carries no signature or credentials, 403 when they are wrong, stale or
// replayed. Nothing was recorded.
func (h *Handler) refuse(w http.ResponseWriter, provider string, err error) {
	status := http.StatusForbidden
	if errors.Is(err, ErrUnsigned) {
		status = http.StatusUnauthorized
	}
	h.cfg.Log.Warn("webhook refused", "provider", provider, "status", status, "err", err)
	reply(w, status, answer{Error: provider + " webhook refused: " + err.Error() + "; nothing was recorded"})
}

// ErrUnsigned is returned for a request that carries no signature or
// credentials at all.
var ErrUnsigned = errors.New("unsigned")

func (h *Handler) off(w http.ResponseWriter, provider, variable string) {
	reply(w, http.StatusNotFound, answer{Error: fmt.Sprintf("the %s webhook is off: set %s to turn it on", provider, variable)})
}

func (h *Handler) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		reply(w, http.StatusRequestEntityTooLarge, answer{Error: fmt.Sprintf("body over %d bytes", maxBody), Field: "body"})
		return nil, false
	}
	return b, true
}

// Record stores verified reports — a report without a time, or with one
// in the future, happened now — and tells OnEvent of the events they
// became. The providers' endpoints and Waymark's own shape record so.
func (h *Handler) Record(ctx context.Context, rs []Report, nonce *Nonce) (Recorded, error) {
	now := h.cfg.Now()
	for i := range rs {
		if rs[i].At.IsZero() || rs[i].At.After(now) {
			rs[i].At = now
		}
	}
	got, err := h.cfg.Store.RecordReports(ctx, rs, RecordOptions{SoftLimit: max(h.cfg.SoftLimit, 0), SoftWindow: h.cfg.SoftWindow, Now: now, Nonce: nonce})
	if err != nil {
		return got, err
	}
	if h.cfg.OnEvent != nil {
		for _, e := range got.Events {
			h.cfg.OnEvent(e.ContactID, e.Name, e.Properties, e.At)
		}
	}
	return got, nil
}

// record stores verified reports and answers.
func (h *Handler) record(w http.ResponseWriter, r *http.Request, provider string, rs []Report, nonce *Nonce) {
	// Done even if the relay hangs up meanwhile: it retries, and a retry
	// finds the reports recorded.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	got, err := h.Record(ctx, rs, nonce)
	if errors.Is(err, ErrReplayed) {
		h.refuse(w, provider, fmt.Errorf("replayed: this token was used before"))
		return
	}
	if err != nil {
		h.cfg.Log.Error("recording delivery reports", "provider", provider, "err", err)
		reply(w, http.StatusServiceUnavailable, answer{Error: "storage unavailable, nothing was recorded; retry later"})
		return
	}
	if len(rs) > 0 {
		h.cfg.Log.Info("delivery reports", "provider", provider, "reports", len(rs), "recorded", got.New,
			"duplicates", got.Duplicates, "suppressed", got.Suppressed, "cancelled_sends", got.Cancelled)
	}
	reply(w, http.StatusOK, answer{Success: true, Reports: len(rs), Recorded: got.New, Duplicates: got.Duplicates, Suppressed: got.Suppressed})
}

func (h *Handler) ses(w http.ResponseWriter, r *http.Request) {
	if len(h.cfg.SESTopics) == 0 {
		h.off(w, "Amazon SES", "WAYMARK_SES_TOPIC_ARNS")
		return
	}
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	m, err := ParseSNS(body)
	if err != nil {
		h.refuse(w, "ses", fmt.Errorf("%w: %v", ErrUnsigned, err))
		return
	}
	// The topic first: a message from another topic is refused without
	// fetching a certificate for it.
	if !slices.Contains(h.cfg.SESTopics, m.TopicArn) {
		h.refuse(w, "ses", fmt.Errorf("topic %q is not one of WAYMARK_SES_TOPIC_ARNS", m.TopicArn))
		return
	}
	if err := h.cfg.SNS.Verify(r.Context(), m); err != nil {
		h.refuse(w, "ses", err)
		return
	}
	switch m.Type {
	case SNSSubscription:
		if err := h.cfg.SNS.Confirm(r.Context(), m); err != nil {
			h.cfg.Log.Error("confirming an SNS subscription", "topic", m.TopicArn, "err", err)
			reply(w, http.StatusBadGateway, answer{Error: err.Error()})
			return
		}
		h.cfg.Log.Info("SNS subscription confirmed", "topic", m.TopicArn)
		reply(w, http.StatusOK, answer{Success: true})
		return
	case SNSUnsubscribeConfirm:
		h.cfg.Log.Warn("SNS subscription ended", "topic", m.TopicArn)
		reply(w, http.StatusOK, answer{Success: true})
		return
	}
	rs, err := ParseSES(m.Message, m.MessageID)
	if err != nil {
		reply(w, http.StatusBadRequest, answer{Error: err.Error(), Field: "Message"})
		return
	}
	h.record(w, r, "ses", rs, nil)
}

func (h *Handler) postmark(w http.ResponseWriter, r *http.Request) {
	if h.cfg.PostmarkUser == "" && h.cfg.PostmarkPassword == "" {
		h.off(w, "Postmark", "WAYMARK_POSTMARK_WEBHOOK_AUTH")
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="waymark postmark webhook"`)
		h.refuse(w, "postmark", fmt.Errorf("%w: no HTTP Basic credentials (put them in the webhook URL: https://USER:PASSWORD@host/v1/webhooks/postmark)", ErrUnsigned))
		return
	}
	u := subtle.ConstantTimeCompare([]byte(user), []byte(h.cfg.PostmarkUser))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(h.cfg.PostmarkPassword))
	if u&p != 1 {
		h.refuse(w, "postmark", errors.New("wrong HTTP Basic credentials"))
		return
	}
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	rs, err := ParsePostmark(body)
	if err != nil {
		reply(w, http.StatusBadRequest, answer{Error: err.Error(), Field: "body"})
		return
	}
	h.record(w, r, "postmark", rs, nil)
}

func (h *Handler) sendgrid(w http.ResponseWriter, r *http.Request) {
	if h.cfg.SendGridKey == nil {
		h.off(w, "SendGrid", "WAYMARK_SENDGRID_WEBHOOK_KEY")
		return
	}
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	if err := VerifySendGrid(h.cfg.SendGridKey, r.Header.Get(SendGridSignatureHeader), r.Header.Get(SendGridTimestampHeader), body, h.cfg.Now(), Tolerance); err != nil {
		h.refuse(w, "sendgrid", err)
		return
	}
	rs, err := ParseSendGrid(body)
	if err != nil {
		reply(w, http.StatusBadRequest, answer{Error: err.Error(), Field: "body"})
		return
	}
	h.record(w, r, "sendgrid", rs, nil)
}

func (h *Handler) mailgun(w http.ResponseWriter, r *http.Request) {
	if h.cfg.MailgunKey == "" {
		h.off(w, "Mailgun", "WAYMARK_MAILGUN_SIGNING_KEY")
		return
	}
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	sig, rs, err := ParseMailgun(body)
	if err != nil && sig.Signature == "" {
		h.refuse(w, "mailgun", fmt.Errorf("%w: %v", ErrUnsigned, err))
		return
	}
	now := h.cfg.Now()
	if verr := sig.Verify(h.cfg.MailgunKey, now, Tolerance); verr != nil {
		h.refuse(w, "mailgun", verr)
		return
	}
	if err != nil {
		reply(w, http.StatusBadRequest, answer{Error: err.Error(), Field: "event-data"})
		return
	}
	// The token is remembered for as long as its timestamp could pass as
	// fresh, with the reports, so a replay is refused and a retry after a
	// failure is not.
	h.record(w, r, "mailgun", rs, &Nonce{Provider: "mailgun", Value: sig.Token, Expires: now.Add(2*Tolerance + time.Minute)})
}
