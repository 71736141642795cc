package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/templates"
)

// cmdList lists what the applied journey holds: rules, templates, tones,
// sequences or offers.
func cmdList(ctx context.Context, e *env, args []string) error {
	what := args[0]
	var cfg config.Config
	fs := e.flags("list "+what, &cfg, databaseFlags...)
	asJSON := fs.Bool("json", false, "print JSON lines, one a definition")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("list %s: unexpected argument %q", what, pos[0])
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	var rows [][]string // the first is the header
	var items []any
	switch what {
	case "rules":
		rules, err := st.RuleInfos(ctx)
		if err != nil {
			return err
		}
		rows = append(rows, []string{"#", "RULE", "VERSION", "FROM → TO", "WHEN"})
		for i, r := range rules {
			rows = append(rows, []string{fmt.Sprint(i + 1), r.Name, fmt.Sprint(r.Version), strings.Join(r.From, ", ") + " → " + r.To, r.Condition})
			items = append(items, r)
		}
	case "tones":
		tones, err := st.ToneRules(ctx)
		if err != nil {
			return err
		}
		rows = append(rows, []string{"#", "TONE", "WHEN"})
		for i, t := range tones {
			when := t.When
			if when == "" {
				when = "(the default)"
			}
			rows = append(rows, []string{fmt.Sprint(i + 1), t.Tone, when})
			items = append(items, map[string]any{"tone": t.Tone, "when": t.When})
		}
	case "templates":
		list, err := st.TemplateList(ctx)
		if err != nil {
			return err
		}
		rows = append(rows, []string{"TEMPLATE", "VERSION", "SUBJECT", "TONE VARIANTS", "UPDATED"})
		for _, n := range list {
			var t struct {
				Base  templates.Content            `json:"base"`
				Tones map[string]templates.Content `json:"tones"`
			}
			_ = json.Unmarshal(n.Definition, &t)
			tones := make([]string, 0, len(t.Tones))
			for tone := range t.Tones {
				tones = append(tones, tone)
			}
			rows = append(rows, []string{n.Name, fmt.Sprint(n.Version), t.Base.Subject, strings.Join(slices.Sorted(slices.Values(tones)), ", "), n.UpdatedAt.UTC().Format(time.DateTime)})
			items = append(items, n)
		}
	case "sequences":
		return listSequences(ctx, e, st, *asJSON)
	case "offers":
		list, err := st.OfferList(ctx)
		if err != nil {
			return err
		}
		rows = append(rows, []string{"OFFER", "WHEN", "SHARE", "COOLDOWN", "TEMPLATE", "CODES"})
		for _, n := range list {
			var o campaigns.Offer
			_ = json.Unmarshal(n.Definition, &o)
			codes := "generated (" + o.Prefix + "…)"
			if len(o.Codes) > 0 {
				codes = fmt.Sprintf("a pool of %d", len(o.Codes))
			}
			rows = append(rows, []string{o.Name, o.When, fmt.Sprint(o.Share), duration(o.Cooldown), o.Template, codes})
			items = append(items, n)
		}
	}
	return printRows(e, rows, items, *asJSON, what)
}

// listSequences lists the sequences with their trigger, steps and whether
// they are paused.
func listSequences(ctx context.Context, e *env, st *store.Store, asJSON bool) error {
	list, err := st.SequenceList(ctx)
	if err != nil {
		return err
	}
	paused, err := st.PausedSequences(ctx)
	if err != nil {
		return err
	}
	rows := [][]string{{"SEQUENCE", "VERSION", "TRIGGER", "STEPS", "STATE"}}
	var items []any
	for _, n := range list {
		var s campaigns.Sequence
		_ = json.Unmarshal(n.Definition, &s)
		steps := make([]string, len(s.Steps))
		for i, step := range s.Steps {
			steps[i] = fmt.Sprintf("%d. %s after %s", i+1, step.Template, duration(step.After))
		}
		state := "running"
		for _, p := range paused {
			if p.Name == n.Name {
				state = fmt.Sprintf("paused since %s, %d %s waiting", p.PausedAt.UTC().Format(time.DateTime), p.Waiting, plural(p.Waiting, "email", "emails"))
			}
		}
		rows = append(rows, []string{n.Name, fmt.Sprint(n.Version), s.Trigger.String(), strings.Join(steps, "; "), state})
		items = append(items, map[string]any{"name": n.Name, "version": n.Version, "definition": n.Definition, "state": state})
	}
	return printRows(e, rows, items, asJSON, "sequences")
}

// printRows prints a table (or the items as JSON lines).
func printRows(e *env, rows [][]string, items []any, asJSON bool, what string) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, it := range items {
			if err := enc.Encode(it); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rows) == 1 {
		fmt.Fprintf(e.stdout, "no %s: the journey applied here has none (waymark apply -f FILE)\n", what)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// duration writes a journey duration as the journey file does: 48h, 3d.
func duration(d time.Duration) string { return journey.FormatDuration(d) }
