package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/bounce"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/tracking"
	"github.com/waymark/waymark/internal/webhook"
)

// mountWebhooks adds the providers' webhooks (Amazon SES through SNS,
// Postmark, SendGrid, Mailgun) to mux, and returns their handler, with
// which the own-shape bounce webhook (ownShape) and the bounce listener
// record delivery reports the same way: an event on the contact, soft
// bounces counted, each report once. Config.SNS, if
// set, verifies SNS signatures (tests give one that reaches a local
// server).
func (a *App) mountWebhooks(mux *http.ServeMux) (*bounce.Handler, error) {
	cfg, st, log, now, sns := a.cfg.Settings, a.store, a.log, a.cfg.Now, a.cfg.SNS
	var key = cfg.SendGridWebhookKey
	hc := bounce.Config{
		Store: st, Log: log, Now: now, SNS: sns, SESTopics: cfg.SESTopics(), MailgunKey: cfg.MailgunSigningKey,
		SoftLimit: cfg.SoftBounces, SoftWindow: cfg.SoftBounceWithin,
		OnEvent: a.touch,
	}
	if hc.SoftLimit == 0 {
		hc.SoftLimit = -1 // WAYMARK_SOFT_BOUNCE_LIMIT=0: never
	}
	if key != "" {
		k, err := bounce.ParseSendGridKey(key)
		if err != nil {
			return nil, &config.Error{Var: "WAYMARK_SENDGRID_WEBHOOK_KEY", Msg: err.Error() + " (paste the Verification Key SendGrid shows for the Signed Event Webhook)"}
		}
		hc.SendGridKey = k
	}
	hc.PostmarkUser, hc.PostmarkPassword, _ = strings.Cut(cfg.PostmarkWebhookAuth, ":")
	h := bounce.NewHandler(hc)
	for _, p := range h.Patterns() {
		mux.Handle(p, h)
	}
	return h, nil
}

// ownShape records the tracking handler's own-shape bounce webhook's
// events with h, as the providers' are.
func (a *App) ownShape(h *bounce.Handler) func(context.Context, tracking.BounceWebhook, string) (bool, error) {
	return func(ctx context.Context, b tracking.BounceWebhook, email string) (bool, error) {
		r := ownReport(b, email, a.cfg.Now())
		got, err := h.Record(ctx, []bounce.Report{r}, nil)
		if err != nil {
			return false, err
		}
		return r.Kind == bounce.Complained || r.BounceType == bounce.Hard || got.Suppressed > 0, nil
	}
}

// bounceListener starts the listener for returned emails (DSNs to the
// VERP return paths, feedback-loop reports) when WAYMARK_BOUNCE_SMTP_ADDR
// is set; what it takes is recorded with h, until ctx is done.
func (a *App) bounceListener(ctx context.Context, h *bounce.Handler) error {
	cfg := a.cfg.Settings
	if cfg.BounceSMTPAddr == "" {
		return nil
	}
	verp, err := returnPaths(ctx, cfg, a.store)
	if err != nil {
		return err
	}
	in, err := bounce.StartInbound(ctx, bounce.InboundConfig{Addr: cfg.BounceSMTPAddr, VERP: verp, Sends: a.store, Handler: h, Log: a.log})
	if err != nil {
		return &config.Error{Var: "WAYMARK_BOUNCE_SMTP_ADDR", Msg: err.Error()}
	}
	a.log.Info("bounce listener", "addr", in.Addr(), "return paths", "bounces+…@"+verp.Domain(), "feedback loops", bounce.FeedbackLocal+"@"+verp.Domain())
	return nil
}

// ownReport is an event of Waymark's own bounce webhook shape as a
// report. Without an id, its id is derived from its content, so posting
// the same event twice records it once.
func ownReport(b tracking.BounceWebhook, email string, now time.Time) bounce.Report {
	r := bounce.Report{Provider: "waymark", ID: b.ID, Email: email, MessageIDs: []string{b.MessageID}, At: now, Detail: b.Diagnostic}
	switch b.Type {
	case "complaint":
		r.Kind = bounce.Complained
	case "delivery":
		r.Kind = bounce.Delivered
	default:
		r.Kind, r.BounceType = bounce.Bounced, b.BounceType
	}
	if b.Timestamp != nil && !b.Timestamp.After(now) {
		r.At = *b.Timestamp
	}
	if r.ID == "" {
		ts := ""
		if b.Timestamp != nil {
			ts = b.Timestamp.UTC().Format(time.RFC3339Nano)
		}
		h := sha256.Sum256([]byte(strings.Join([]string{b.Type, email, b.BounceType, b.Diagnostic, b.MessageID, ts}, "\x00")))
		r.ID = "content:" + hex.EncodeToString(h[:16])
	}
	return r
}

// webhooks is the deliverer of webhooks out: the outbox's due deliveries
// posted, signed, to the journey's endpoints (none: a pass is one small
// query a second). Redirects are not followed (a receiver answers where
// it was declared), and an endpoint has 15 s to answer.
func (a *App) webhooks() *webhook.Deliverer {
	getenv := a.cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	client := &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return webhook.NewDeliverer(a.store, getenv, client, a.log, a.cfg.Now, a.sched.Holder())
}
