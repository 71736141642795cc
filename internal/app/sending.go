package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/bounce"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/tracking"
	"github.com/waymark/waymark/mailer"
)

// linkSigner returns the signer of the links in emails: keyed by
// WAYMARK_SECRET, or, when it is not set, by a secret generated once and
// kept in the database, so every instance signs alike and links keep
// working across restarts. Links signed with the database's secret keep
// working after WAYMARK_SECRET is set.
func linkSigner(ctx context.Context, cfg *config.Config, st *store.Store) (*tracking.Signer, error) {
	secret, older, err := linkSecrets(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	sg, err := tracking.NewSigner(secret, older...)
	if err != nil {
		return nil, &config.Error{Var: "WAYMARK_SECRET", Msg: err.Error()}
	}
	return sg, nil
}

// linkSecrets returns the secret links are signed with (WAYMARK_SECRET,
// or the one the database keeps when it is unset) and the older one still
// accepted (the stored one, after WAYMARK_SECRET was set).
func linkSecrets(ctx context.Context, cfg *config.Config, st *store.Store) (string, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	stored, err := st.LinkSecret(ctx, cfg.Secret == "")
	if err != nil {
		return "", nil, err
	}
	secret, older := cfg.Secret, []string{stored}
	if secret == "" {
		secret, older = stored, nil
	} else if stored == "" {
		older = nil
	}
	return secret, older, nil
}

// returnPaths gives each email a VERP return path at WAYMARK_BOUNCE_DOMAIN,
// signed with the links' secrets; nil when the domain is unset.
func returnPaths(ctx context.Context, cfg *config.Config, st *store.Store) (*bounce.VERP, error) {
	if cfg.BounceDomain == "" {
		return nil, nil
	}
	secret, older, err := linkSecrets(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	v, err := bounce.NewVERP(cfg.BounceDomain, secret, older...)
	if err != nil {
		return nil, &config.Error{Var: "WAYMARK_BOUNCE_DOMAIN", Msg: err.Error()}
	}
	return v, nil
}

// Decorator returns what decorates emails as the sender does: signed
// unsubscribe and preferences links, RFC 8058 headers, the footer,
// tracked links and the open pixel.
func Decorator(ctx context.Context, cfg *config.Config, st *store.Store) (*tracking.Decorator, error) {
	signer, err := linkSigner(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	// Links expire from the wall clock, also in a backtest: an email sent
	// now must be unsubscribable for as long as any other.
	return &tracking.Decorator{Signer: signer, PublicURL: cfg.LinkBase(), PostalAddress: cfg.PostalAddress, From: cfg.From}, nil
}

// newSender builds the sender from the configuration; nil (and no error)
// when no SMTP server is configured. now is the sender's clock (the wall
// clock, or the instant of a backtest).
func newSender(ctx context.Context, cfg *config.Config, st *store.Store, runner *campaigns.Runner, log *slog.Logger, now func() time.Time) (*campaigns.Sender, error) {
	if cfg.SMTP == nil {
		return nil, nil
	}
	if cfg.From == "" {
		return nil, &config.Error{Var: "WAYMARK_FROM", Msg: "missing: sending email needs a sender address"}
	}
	mc := mailer.Config{Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, Username: cfg.SMTP.Username, Password: cfg.SMTP.Password, TLS: cfg.SMTP.TLS,
		DialTimeout: 15 * time.Second, CommandTimeout: 60 * time.Second}
	if cfg.DKIMKeyFile != "" {
		key, err := os.ReadFile(cfg.DKIMKeyFile)
		if err != nil {
			return nil, &config.Error{Var: "WAYMARK_DKIM_KEY_FILE", Msg: err.Error()}
		}
		mc.DKIM = &mailer.DKIMConfig{Domain: cfg.DKIMDomain, Selector: cfg.DKIMSelector, KeyPEM: key}
	}
	d, err := mailer.NewDialer(mc)
	if err != nil {
		return nil, &config.Error{Var: "WAYMARK_SMTP_URL", Msg: err.Error()}
	}
	dec, err := Decorator(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	verp, err := returnPaths(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	var returnPath func(contactID, sendID int64) string
	if verp != nil {
		returnPath = verp.ReturnPath
	}
	ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
	installation, err := st.InstallationID(ictx)
	cancel()
	if err != nil {
		return nil, err
	}
	if cfg.PostalAddress == "" {
		log.Warn("no postal address configured (WAYMARK_POSTAL_ADDRESS): marketing emails go out without one in the footer, which anti-spam laws (CAN-SPAM) require")
	}
	if cfg.PublicURL == "" {
		log.Warn("no public URL configured (WAYMARK_PUBLIC_URL): unsubscribe and tracking links point at " + cfg.LinkBase() + ", which recipients may not reach")
	}
	// 32 connections unless ?pool= says otherwise. Each connection waits
	// for one durable commit per message (exactly once), so throughput
	// grows with connections until the machine's CPU is the limit: a
	// first tick's emails of examples/journey.yaml into smtp-sink, 2
	// cores, went out at 1,600-3,000/s with 8, 3,800/s with 16, 5,600/s
	// with 32 and 5,500/s with 64. A relay that limits concurrent
	// connections needs its limit here.
	conns := cfg.SMTP.PoolSize
	if conns == 0 {
		conns = 32
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return campaigns.NewSender(st, campaigns.SMTP(d), runner, log, now, campaigns.SenderConfig{
		From:        cfg.From,
		Connections: conns,
		Rate:        cfg.SMTP.Rate,
		// Sends claimed at once: a claim, its facts, templates and tone
		// rules cost about the same for 1,000 as for 500 (bench send:
		// waymark 79-80 µs of CPU an email, was 84-87 with 500).
		Batch:        1000,
		Holder:       fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])),
		Installation: installation,
		Links: func(d *campaigns.Due) (string, string) {
			return dec.Links(d.ContactID, d.ID)
		},
		Decorate: func(m *mailer.Message, d *campaigns.Due, tracking bool, unsubscribe, preferences string) {
			dec.DecorateLinks(m, d.ContactID, d.ID, tracking, unsubscribe, preferences)
		},
		ReturnPath: returnPath,
	}), nil
}
