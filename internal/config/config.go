// Package config reads Waymark's configuration from the environment and
// command-line flags (flags win), and says which variable is wrong when one
// is.
package config

import (
	"flag"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SMTP is a parsed WAYMARK_SMTP_URL.
type SMTP struct {
	Host     string
	Port     int
	Username string
	Password string
	TLS      string // none, starttls or tls
	// Pool size and rate, from the URL's query (?pool=8&rate=5000).
	PoolSize int
	Rate     float64
}

// Config is everything `waymark` can be told.
type Config struct {
	DatabaseURL   string
	HTTPAddr      string
	SMTPURL       string
	SMTP          *SMTP // nil when WAYMARK_SMTP_URL is unset
	From          string
	WriteKey      string
	Secret        string
	PublicURL     string
	PostalAddress string
	DKIMDomain    string
	DKIMSelector  string
	DKIMKeyFile   string
	CronSpec      string
	DataDir       string // where a private PostgreSQL keeps its data

	// Provider webhooks in (issue 20): each is off until its secret is set.
	SESTopicARNs        string // comma-separated SNS topic ARNs accepted
	PostmarkWebhookAuth string // USER:PASSWORD Postmark's webhook URL carries
	SendGridWebhookKey  string // the Signed Event Webhook's verification key
	MailgunSigningKey   string // Mailgun's webhook signing key
	SoftBounceLimit     string
	SoftBounceWindow    string
	// Bounces by email: the VERP return paths' domain, and where the
	// bounce listener takes what mail servers return to them.
	BounceDomain   string
	BounceSMTPAddr string
	// Parsed from the two soft-bounce settings above.
	SoftBounces      int
	SoftBounceWithin time.Duration
}

// LinkBase is the base URL of the links in emails and previews: the
// public URL, or else the HTTP address.
func (c *Config) LinkBase() string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	return "http://" + c.HTTPAddr
}

// Error names the setting at fault.
type Error struct {
	Var string
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Var, e.Msg) }

type setting struct {
	env, flag, usage, def string
	dst                   *string
}

func (c *Config) settings() []setting {
	return []setting{
		{"DATABASE_URL", "database-url", "PostgreSQL connection string", "", &c.DatabaseURL},
		{"WAYMARK_HTTP_ADDR", "http-addr", "where serve listens", "127.0.0.1:8080", &c.HTTPAddr},
		{"WAYMARK_SMTP_URL", "smtp-url", "smtp://user:pass@host:port?tls=none|starttls|tls", "", &c.SMTPURL},
		{"WAYMARK_FROM", "from", "sender address", "", &c.From},
		{"WAYMARK_WRITE_KEY", "write-key", "write key for the ingestion API", "", &c.WriteKey},
		{"WAYMARK_SECRET", "secret", "key for signed tracking and unsubscribe links", "", &c.Secret},
		{"WAYMARK_PUBLIC_URL", "public-url", "base URL for links in emails", "", &c.PublicURL},
		{"WAYMARK_POSTAL_ADDRESS", "postal-address", "the sender's postal address for email footers", "", &c.PostalAddress},
		{"WAYMARK_DKIM_DOMAIN", "dkim-domain", "DKIM signing domain", "", &c.DKIMDomain},
		{"WAYMARK_DKIM_SELECTOR", "dkim-selector", "DKIM selector", "", &c.DKIMSelector},
		{"WAYMARK_DKIM_KEY_FILE", "dkim-key-file", "DKIM private key (PEM, RSA or Ed25519)", "", &c.DKIMKeyFile},
		{"WAYMARK_CRON", "cron", "scheduler spec (robfig/cron, seconds field optional)", "@every 1m", &c.CronSpec},
		{"WAYMARK_DATA_DIR", "data-dir", "data directory of the private PostgreSQL", "", &c.DataDir},
		{"WAYMARK_SES_TOPIC_ARNS", "ses-topic-arns", "SNS topic ARNs (comma-separated) whose SES notifications /v1/webhooks/ses accepts", "", &c.SESTopicARNs},
		{"WAYMARK_POSTMARK_WEBHOOK_AUTH", "postmark-webhook-auth", "USER:PASSWORD that Postmark's webhook URL carries (HTTP Basic)", "", &c.PostmarkWebhookAuth},
		{"WAYMARK_SENDGRID_WEBHOOK_KEY", "sendgrid-webhook-key", "SendGrid Signed Event Webhook verification key (base64 or PEM)", "", &c.SendGridWebhookKey},
		{"WAYMARK_MAILGUN_SIGNING_KEY", "mailgun-signing-key", "Mailgun webhook signing key", "", &c.MailgunSigningKey},
		{"WAYMARK_SOFT_BOUNCE_LIMIT", "soft-bounce-limit", "soft bounces within the window that suppress an address (0: never)", "3", &c.SoftBounceLimit},
		{"WAYMARK_SOFT_BOUNCE_WINDOW", "soft-bounce-window", "the window soft bounces are counted in (30d, 72h)", "30d", &c.SoftBounceWindow},
		{"WAYMARK_BOUNCE_DOMAIN", "bounce-domain", "give each email a return path of its own at this domain (bounces+SEND@DOMAIN; its MX must reach the bounce listener)", "", &c.BounceDomain},
		{"WAYMARK_BOUNCE_SMTP_ADDR", "bounce-smtp-addr", "where the bounce listener takes returned emails and feedback-loop reports (host:port; needs WAYMARK_BOUNCE_DOMAIN)", "", &c.BounceSMTPAddr},
	}
}

// Register adds the settings' flags to fs — only those named (by flag
// name, "database-url"), when any are — and call Load after fs.Parse. The
// environment is read for every setting either way.
func (c *Config) Register(fs *flag.FlagSet, only ...string) {
	for _, s := range c.settings() {
		if len(only) == 0 || slices.Contains(only, s.flag) {
			fs.StringVar(s.dst, s.flag, "", fmt.Sprintf("%s (env %s)", s.usage, s.env))
		}
	}
}

// Load fills unset settings from getenv and then defaults, and validates
// them.
func (c *Config) Load(getenv func(string) string) error {
	for _, s := range c.settings() {
		if *s.dst == "" {
			*s.dst = strings.TrimSpace(getenv(s.env))
		}
		if *s.dst == "" {
			*s.dst = s.def
		}
	}
	if c.DatabaseURL != "" {
		if _, err := url.Parse(c.DatabaseURL); err != nil && !strings.Contains(c.DatabaseURL, "=") {
			return &Error{"DATABASE_URL", "not a connection string: " + err.Error()}
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return &Error{"WAYMARK_HTTP_ADDR", fmt.Sprintf("%q is not host:port", c.HTTPAddr)}
	}
	if c.SMTPURL != "" {
		s, err := ParseSMTPURL(c.SMTPURL)
		if err != nil {
			return &Error{"WAYMARK_SMTP_URL", err.Error()}
		}
		c.SMTP = s
	}
	if c.From != "" {
		a, err := mail.ParseAddress(c.From)
		if err != nil {
			return &Error{"WAYMARK_FROM", fmt.Sprintf("%q is not an email address", c.From)}
		}
		if strings.ContainsAny(c.From, "\r\n") {
			return &Error{"WAYMARK_FROM", "contains a line break"}
		}
		_ = a
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &Error{"WAYMARK_PUBLIC_URL", fmt.Sprintf("%q is not an http(s) URL", c.PublicURL)}
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	if c.Secret != "" && len(c.Secret) < 16 {
		return &Error{"WAYMARK_SECRET", "too short: use at least 16 characters (32 random bytes is best)"}
	}
	dkim := []string{c.DKIMDomain, c.DKIMSelector, c.DKIMKeyFile}
	set := 0
	for _, v := range dkim {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		for i, v := range dkim {
			if v == "" {
				return &Error{[]string{"WAYMARK_DKIM_DOMAIN", "WAYMARK_DKIM_SELECTOR", "WAYMARK_DKIM_KEY_FILE"}[i], "missing: DKIM signing needs the domain, the selector and the key file"}
			}
		}
	}
	if err := c.loadWebhooks(); err != nil {
		return err
	}
	if c.DKIMKeyFile != "" {
		if _, err := os.Stat(c.DKIMKeyFile); err != nil {
			return &Error{"WAYMARK_DKIM_KEY_FILE", err.Error()}
		}
	}
	return nil
}

// ParseSMTPURL parses smtp://user:pass@host:port?tls=none|starttls|tls.
// smtps:// means tls=tls. The default port follows the TLS mode (25, 587,
// 465).
func ParseSMTPURL(raw string) (*SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	s := &SMTP{Host: u.Hostname(), TLS: "starttls"}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		s.TLS = "tls"
	default:
		return nil, fmt.Errorf("scheme %q: use smtp:// or smtps://", u.Scheme)
	}
	if s.Host == "" {
		return nil, fmt.Errorf("missing host")
	}
	q := u.Query()
	if t := q.Get("tls"); t != "" {
		switch t {
		case "none", "starttls", "tls":
			s.TLS = t
		default:
			return nil, fmt.Errorf("tls=%q: use none, starttls or tls", t)
		}
	}
	if p := u.Port(); p != "" {
		s.Port, err = strconv.Atoi(p)
		if err != nil || s.Port <= 0 || s.Port > 65535 {
			return nil, fmt.Errorf("port %q is not a port number", p)
		}
	} else {
		s.Port = map[string]int{"none": 25, "starttls": 587, "tls": 465}[s.TLS]
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	if v := q.Get("pool"); v != "" {
		if s.PoolSize, err = strconv.Atoi(v); err != nil || s.PoolSize < 1 || s.PoolSize > 1000 {
			return nil, fmt.Errorf("pool=%q: want a number of connections from 1 to 1000", v)
		}
	}
	if v := q.Get("rate"); v != "" {
		if s.Rate, err = strconv.ParseFloat(v, 64); err != nil || s.Rate < 0 {
			return nil, fmt.Errorf("rate=%q: want messages per second (0 for unlimited)", v)
		}
	}
	return s, nil
}
