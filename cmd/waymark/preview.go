package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/suggest"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/templates"
)

func cmdPreview(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("preview", &cfg, slices.Concat(databaseFlags, []string{"public-url", "http-addr"})...)
	contact := fs.String("contact", "", "the contact to render for: id, userId, anonymousId or email")
	tone := fs.String("tone", "", "pin a tone instead of choosing one with the tone rules")
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		// waymark preview TEMPLATE --contact ID
		args = append(args[1:], args[0])
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *contact == "" {
		return errors.New("preview: usage: waymark preview TEMPLATE --contact ID")
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	p, err := preview(ctx, st, fs.Arg(0), *contact, *tone, cfg.LinkBase(), clock.Now().UTC())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "template: %s (version %d)\ncontact:  %s\ntone:     %s\nreason:   %s\nsubject:  %s\n\n--- text ---\n%s\n", p.Template, p.Version, p.Contact, toneName(p.Choice.Tone), p.Choice.Reason, p.Rendered.Subject, p.Rendered.Text)
	if p.Rendered.HTML != "" {
		fmt.Fprintf(e.stdout, "\n--- html ---\n%s\n", p.Rendered.HTML)
	}
	return nil
}

func toneName(t string) string {
	if t == "" {
		return "(the template's base)"
	}
	return t
}

// Preview is a template rendered for one contact, with the tone chosen and
// why.
type Preview struct {
	Template string
	Version  int
	Contact  string
	Choice   templates.ToneChoice
	Rendered templates.Rendered
}

func preview(ctx context.Context, st *store.Store, name, contactRef, pinned, base string, now time.Time) (*Preview, error) {
	t, version, err := st.Template(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		msg := fmt.Sprintf("no template %q", name)
		if list, err := st.TemplateList(ctx); err == nil && len(list) > 0 {
			names := make([]string, len(list))
			for i, n := range list {
				names[i] = n.Name
			}
			if s := suggest.Closest(name, names); s != "" {
				return nil, fmt.Errorf("%s; did you mean %q?", msg, s)
			}
			return nil, fmt.Errorf("%s (defined: %s; waymark list templates)", msg, strings.Join(names, ", "))
		}
		return nil, fmt.Errorf("%s (apply a journey that defines it)", msg)
	}
	if err != nil {
		return nil, err
	}
	compiled, err := templates.Compile(t)
	if err != nil {
		return nil, err
	}
	id, err := st.ContactRef(ctx, contactRef)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no contact %q", contactRef)
	}
	if err != nil {
		return nil, err
	}
	p, err := campaigns.PreviewTemplate(ctx, st, compiled, id, pinned, "--tone", base, now)
	var te *campaigns.ToneError
	switch {
	case errors.As(err, &te):
		return nil, fmt.Errorf("--tone %w", err)
	case errors.Is(err, lifecycle.ErrNoContact):
		return nil, fmt.Errorf("no contact %q", contactRef)
	case err != nil:
		return nil, err
	}
	return &Preview{Template: name, Version: version, Contact: fmt.Sprintf("%s (%s)", lifecycle.Who(id, p.Email), p.Stage), Choice: p.Choice, Rendered: p.Rendered}, nil
}
