package campaigns

import (
	"context"
	"fmt"
	"net/mail"
	"strings"

	"github.com/waymark/waymark/mailer"
	"github.com/waymark/waymark/templates"
)

// SeedResult is one test email of a broadcast to a seed address.
type SeedResult struct {
	To      string `json:"to"`
	Variant int    `json:"variant"` // from 1
	Subject string `json:"subject"`
	Tone    string `json:"tone"`
	Result  string `json:"result"` // the SMTP server's answer
	Sent    bool   `json:"sent"`
}

// SendSeeds sends a broadcast's email — each variant of its A/B test — to
// seed addresses, at once, as its recipients would get it (rendered,
// decorated with the footer and unsubscribe headers, "[test]" before the
// subject), in tone (empty: the default tone, the last of the tone
// rules). Test emails are not recorded as sends: they count towards no
// cap, and no contact is behind them.
func (s *Sender) SendSeeds(ctx context.Context, b Broadcast, to []string, tone string) ([]SeedResult, error) {
	if s == nil || s.mail == nil {
		return nil, ErrNoMailer
	}
	for _, addr := range to {
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr {
			return nil, fmt.Errorf("seed address %q is not an email address", addr)
		}
	}
	variants := []int{0}
	if b.Test != nil {
		variants = variants[:0]
		for i := range b.Test.Variants {
			variants = append(variants, i)
		}
	}
	names := map[string]bool{}
	for _, v := range variants {
		names[b.TemplateOf(v)] = true
	}
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	stored, err := s.store.Templates(ctx, list)
	if err != nil {
		return nil, err
	}
	j, err := s.journeyNow(ctx)
	if err != nil {
		return nil, err
	}
	choice := templates.ToneChoice{Tone: tone, Reason: "chosen for the test email"}
	if n := len(j.tones); tone == "" && n > 0 && j.tones[n-1].When == nil {
		choice = templates.ToneChoice{Tone: j.tones[n-1].Tone, Reason: "the default tone"}
	}
	conn, err := s.mail.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to the SMTP server: %w", err)
	}
	defer conn.Close()
	now := s.now()
	var out []SeedResult
	for _, addr := range to {
		for _, v := range variants {
			tpl, ok := stored[b.TemplateOf(v)]
			if !ok {
				return out, fmt.Errorf("template %q does not exist", b.TemplateOf(v))
			}
			if subj := b.SubjectOf(v); subj != "" {
				tpl = tpl.WithSubject(subj)
			}
			compiled, err := s.compiledTemplate(tpl)
			if err != nil {
				return out, err
			}
			d := &Due{Email: addr, Template: tpl.Template.Name}
			data := &templates.Data{Contact: templates.Contact{Email: addr, Traits: map[string]any{}}}
			if s.cfg.Links != nil {
				data.UnsubscribeURL, data.PreferencesURL = s.cfg.Links(d)
			}
			r, err := compiled.Render(choice.Tone, data)
			if err != nil {
				return out, fmt.Errorf("rendering %s: %w", tpl.Template.Name, err)
			}
			subject := "[test] " + r.Subject
			if len(variants) > 1 {
				subject = fmt.Sprintf("[test, variant %d] %s", v+1, r.Subject)
			}
			msg := &mailer.Message{ID: fmt.Sprintf("test.%s.%d.%d", b.Name, now.UnixNano(), len(out)), From: s.cfg.From, To: addr,
				Subject: subject, Text: r.Text, HTML: r.HTML, Date: now}
			if s.cfg.Decorate != nil {
				s.cfg.Decorate(msg, d, j.defs.Settings.Tracking, data.UnsubscribeURL, data.PreferencesURL)
			}
			tx, res := conn.Begin(ctx, msg)
			if tx != nil {
				res = tx.Commit(ctx)
			}
			out = append(out, SeedResult{To: addr, Variant: v + 1, Subject: subject, Tone: choice.Tone, Result: strings.TrimSpace(res.String()), Sent: res.Outcome == mailer.Sent})
			if res.Outcome != mailer.Sent && res.Outcome != mailer.PermFail {
				// The connection is gone: another for the next.
				conn.Close()
				if conn, err = s.mail.Dial(ctx); err != nil {
					return out, fmt.Errorf("connecting to the SMTP server: %w", err)
				}
			}
		}
	}
	return out, nil
}
