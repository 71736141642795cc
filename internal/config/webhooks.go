package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// loadWebhooks checks the provider webhooks' settings and parses the
// soft-bounce policy.
func (c *Config) loadWebhooks() error {
	if c.PostmarkWebhookAuth != "" {
		if u, p, ok := strings.Cut(c.PostmarkWebhookAuth, ":"); !ok || u == "" || p == "" {
			return &Error{"WAYMARK_POSTMARK_WEBHOOK_AUTH", "use USER:PASSWORD, the credentials Postmark's webhook URL carries"}
		}
	}
	for _, arn := range c.SESTopics() {
		if !strings.HasPrefix(arn, "arn:aws") || strings.Count(arn, ":") != 5 {
			return &Error{"WAYMARK_SES_TOPIC_ARNS", fmt.Sprintf("%q is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)", arn)}
		}
	}
	n, err := strconv.Atoi(c.SoftBounceLimit)
	if err != nil || n < 0 {
		return &Error{"WAYMARK_SOFT_BOUNCE_LIMIT", fmt.Sprintf("%q: want a whole number of soft bounces (0: never suppress on soft bounces)", c.SoftBounceLimit)}
	}
	c.SoftBounces = n
	d, err := ParseDays(c.SoftBounceWindow)
	if err != nil || d <= 0 {
		return &Error{"WAYMARK_SOFT_BOUNCE_WINDOW", fmt.Sprintf("%q: want a duration such as 30d or 72h", c.SoftBounceWindow)}
	}
	c.SoftBounceWithin = d
	if c.BounceSMTPAddr != "" {
		if c.BounceDomain == "" {
			return &Error{"WAYMARK_BOUNCE_DOMAIN", "missing: the bounce listener takes mail for the return paths of this domain (set it, e.g. bounces.shop.example, with its MX pointing at the listener)"}
		}
		if _, _, err := net.SplitHostPort(c.BounceSMTPAddr); err != nil {
			return &Error{"WAYMARK_BOUNCE_SMTP_ADDR", fmt.Sprintf("%q is not host:port", c.BounceSMTPAddr)}
		}
	}
	return nil
}

// SESTopics returns WAYMARK_SES_TOPIC_ARNS as a list.
func (c *Config) SESTopics() []string {
	var out []string
	for _, a := range strings.Split(c.SESTopicARNs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// ParseDays is time.ParseDuration that also takes whole days ("30d").
func ParseDays(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(strings.TrimSpace(s), "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
