package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/mailer"
)

// dialer adapts mailer.Dialer to campaigns.Mailer.
type dialer struct{ d *mailer.Dialer }

func (m dialer) Dial(ctx context.Context) (campaigns.MailConn, error) { return m.d.Dial(ctx) }

// newSender builds the sender from the configuration; nil (and no error)
// when no SMTP server is configured.
// now is the sender's clock (time.Now, or the instant of a backtest).
func newSender(cfg *config.Config, st *store.Store, runner *campaigns.Runner, log *slog.Logger, now func() time.Time) (*campaigns.Sender, error) {
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
	conns := cfg.SMTP.PoolSize
	if conns == 0 {
		conns = 8
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	base := publicURL(cfg)
	return campaigns.NewSender(store.SendStore{Store: st}, dialer{d}, runner, log, now, campaigns.SenderConfig{
		From:        cfg.From,
		Connections: conns,
		Rate:        cfg.SMTP.Rate,
		Holder:      fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])),
		Links: func(d *campaigns.Due) (string, string) {
			return fmt.Sprintf("%s/u/%d.%d", base, d.ContactID, d.ID), fmt.Sprintf("%s/preferences/%d.%d", base, d.ContactID, d.ID)
		},
	}), nil
}
