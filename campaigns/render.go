package campaigns

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/suggest"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// A template rendered for one contact: what the sender sends, and what
// `waymark preview` and the API's template preview show beforehand.

// contactData is what a template sees of the contact an email is for.
func contactData(email string, f *rule.Facts) templates.Contact {
	return templates.Contact{Email: email, Traits: f.Traits, Stage: string(f.Stage)}
}

// TemplatePreviewStore is what a template preview reads; it changes
// nothing.
type TemplatePreviewStore interface {
	ToneRules(ctx context.Context) ([]templates.ToneRuleSource, error)
	LoadFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error)
}

// TemplatePreview is a template rendered for one contact, with the tone it
// is written in and why.
type TemplatePreview struct {
	ContactID int64
	Email     string
	Stage     rule.Stage
	Choice    templates.ToneChoice
	Rendered  templates.Rendered
}

// ToneError is a pinned tone that is not one of the journey's: no variant
// of the template and no tone rule has it, so no email is ever written in
// it.
type ToneError struct {
	Tone string
	// Defined are the journey's tones, sorted.
	Defined []string
}

// Error returns "angry: not a tone of this journey (formal, friendly)",
// with the closest tone when one is close.
func (e *ToneError) Error() string {
	msg := fmt.Sprintf("%s: not a tone of this journey", e.Tone)
	if len(e.Defined) == 0 {
		return msg + " (it defines none)"
	}
	msg += " (" + strings.Join(e.Defined, ", ") + ")"
	if s := suggest.Closest(e.Tone, e.Defined); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg
}

// PreviewTemplate renders t for contact id at now as the sender would: in
// the tone the tone rules choose for the contact, or in pin when it is set
// (pinnedBy, such as "--tone", says by what in the reason, with the tone
// the rules would choose). A pinned tone must be one of the journey's, a
// variant of t or the tone of a tone rule (a *ToneError otherwise). The
// unsubscribe and preferences links point at base's /u/PREVIEW and
// /preferences/PREVIEW. A contact that does not exist is
// lifecycle.ErrNoContact. It changes nothing.
func PreviewTemplate(ctx context.Context, st TemplatePreviewStore, t *templates.Compiled, id int64, pin, pinnedBy, base string, now time.Time) (*TemplatePreview, error) {
	src, err := st.ToneRules(ctx)
	if err != nil {
		return nil, err
	}
	if pin != "" {
		if err := pinnable(pin, src, t.Tones()); err != nil {
			return nil, err
		}
	}
	tones, err := templates.CompileTones(src)
	if err != nil {
		return nil, err
	}
	facts, err := st.LoadFacts(ctx, lifecycle.FactsQuery{IDs: []int64{id}, AsOf: now, Needs: rule.Needs(templates.ToneConditions(tones)...)})
	if err != nil {
		return nil, err
	}
	if len(facts) == 0 {
		return nil, fmt.Errorf("previewing for contact %d: %w", id, lifecycle.ErrNoContact)
	}
	f := facts[0]
	choice := templates.ChooseTone(tones, &f.Facts)
	if pin != "" {
		would := choice.Tone
		if would == "" {
			would = "(the template's base)"
		}
		choice = templates.ToneChoice{Tone: pin, Rule: -1, Reason: fmt.Sprintf("chosen with %s; the tone rules would choose %s (%s)", pinnedBy, would, choice.Reason)}
		if !slices.Contains(t.Tones(), pin) {
			choice.Reason += fmt.Sprintf("; the template has no %s variant, so this is its base content", pin)
		}
	}
	r, err := t.Render(choice.Tone, &templates.Data{
		Contact:        contactData(f.Email, &f.Facts),
		UnsubscribeURL: base + "/u/PREVIEW",
		PreferencesURL: base + "/preferences/PREVIEW",
	})
	if err != nil {
		return nil, err
	}
	return &TemplatePreview{ContactID: id, Email: f.Email, Stage: f.Stage, Choice: choice, Rendered: r}, nil
}

// pinnable refuses a tone that no tone rule can choose and no variant of
// the template is written in: it would never be sent.
func pinnable(tone string, rules []templates.ToneRuleSource, variants []string) error {
	defined := slices.Clone(variants)
	for _, r := range rules {
		if !slices.Contains(defined, r.Tone) {
			defined = append(defined, r.Tone)
		}
	}
	if slices.Contains(defined, tone) {
		return nil
	}
	slices.Sort(defined)
	return &ToneError{Tone: tone, Defined: defined}
}
