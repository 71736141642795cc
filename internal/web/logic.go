package web

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/contact"
	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/stats"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// Rules: checking an edit, compiling as one types, dry runs.

// ruleEdit is a checked rule edit.
type ruleEdit struct {
	rule journey.Rule
	prog *rule.Program
}

// compileResult is what the editor shows as one types.
type compileResult struct {
	OK     bool     `json:"ok"`
	Error  string   `json:"error,omitempty"`
	Line   int      `json:"line,omitempty"`
	Column int      `json:"column,omitempty"`
	Reads  []string `json:"reads,omitempty"`
}

func compileCheck(src string) compileResult {
	p, err := lifecycle.CompileCondition(src)
	var re *rule.Error
	if errors.As(err, &re) {
		return compileResult{Error: re.Msg, Line: re.Line, Column: re.Column}
	}
	if err != nil {
		return compileResult{Error: err.Error()}
	}
	res := compileResult{OK: true}
	for _, a := range p.Aggregates {
		res.Reads = append(res.Reads, a.String())
	}
	return res
}

// checkRule validates an edit as a journey file's rules are
// (lifecycle.CheckRule); the error is the first mistake, and names its
// field.
func checkRule(name string, b ruleBody) (ruleEdit, *apiError) {
	r, errs := lifecycle.CheckRule(name, b.From, b.To, b.When)
	if len(errs) > 0 {
		return ruleEdit{}, &apiError{Field: errs[0].Path(), Error: errs[0].Error()}
	}
	return ruleEdit{rule: journey.Rule{Name: r.Name, From: r.From, To: r.To, When: b.When}, prog: r.When}, nil
}

// dryRunResult is what a rule edit would do now.
type dryRunResult struct {
	Rule     string         `json:"rule"`
	Effects  []dryRunEffect `json:"effects"`
	Contacts int            `json:"contacts_evaluated"`
	Took     string         `json:"took"`
	Summary  string         `json:"summary"`
	Others   []dryRunEffect `json:"other_rules,omitempty"`
	// Loops are rules (the edit among them, or not) that would move
	// contacts back and forth on every pass; saving is refused while
	// the edit makes any.
	Loops     []dryRunLoop     `json:"loops"`
	Sequences []dryRunCampaign `json:"sequences"`
	Offers    []dryRunCampaign `json:"offers"`
}

type dryRunLoop struct {
	Rules    []string `json:"rules"`
	Stages   []string `json:"stages"`
	Contacts int      `json:"contacts"`
	Examples []string `json:"examples,omitempty"`
	Sentence string   `json:"sentence"`
}

// dryRunCampaign is what one pass would do for a sequence (enrol) or an
// offer (reward), and for a sequence started by entering a stage the
// contacts the pass takes through it before they are enrolled.
type dryRunCampaign struct {
	Name           string   `json:"name"`
	Trigger        string   `json:"trigger,omitempty"`
	OnEvents       bool     `json:"on_events,omitempty"` // enrols on events only, not in a dry run
	Contacts       int      `json:"contacts"`
	Examples       []string `json:"examples,omitempty"`
	Eligible       int      `json:"eligible,omitempty"`
	Missed         int      `json:"missed,omitempty"`
	MissedExamples []string `json:"missed_examples,omitempty"`
}

type dryRunEffect struct {
	Rule     string   `json:"rule"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Contacts int      `json:"contacts"`
	Examples []string `json:"examples,omitempty"`
}

// dryRun evaluates the stored rules with the edit in place for every
// contact now, changing nothing.
func (s *Server) dryRun(ctx context.Context, e ruleEdit) (dryRunResult, error) {
	release, err := s.dryRunSlot()
	if err != nil {
		return dryRunResult{}, err
	}
	defer release()
	stored, err := s.st.Rules(ctx)
	if err != nil {
		return dryRunResult{}, err
	}
	rules, err := lifecycle.LoadRules(stored)
	if err != nil {
		return dryRunResult{}, err
	}
	edited := lifecycle.Rule{Name: e.rule.Name, From: e.rule.From, To: e.rule.To, When: e.prog}
	found := false
	for i := range rules {
		if rules[i].Name == e.rule.Name {
			edited.Version = rules[i].Version
			rules[i] = edited
			found = true
		}
	}
	if !found {
		rules = append(rules, edited)
	}
	start := time.Now()
	defs, err := s.st.Definitions(ctx)
	if err != nil {
		return dryRunResult{}, err
	}
	preview, err := campaigns.NewPreview(s.st, defs)
	if err != nil {
		return dryRunResult{}, err
	}
	rep, err := s.engine.DryRunWith(ctx, rules, s.now(), preview)
	if err != nil {
		return dryRunResult{}, err
	}
	res := dryRunResult{Rule: e.rule.Name, Contacts: rep.Stats.Contacts, Took: time.Since(start).Round(time.Millisecond).String(), Effects: []dryRunEffect{},
		Loops: []dryRunLoop{}, Sequences: []dryRunCampaign{}, Offers: []dryRunCampaign{}}
	for _, l := range rep.Loops {
		stages := make([]string, len(l.Stages))
		for i, st := range l.Stages {
			stages[i] = string(st)
		}
		res.Loops = append(res.Loops, dryRunLoop{Rules: l.Rules, Stages: stages, Contacts: l.Contacts, Examples: l.Examples, Sentence: l.Sentence()})
	}
	for _, sp := range preview.Sequences {
		res.Sequences = append(res.Sequences, dryRunCampaign{Name: sp.Name, Trigger: sp.Trigger.String(), OnEvents: sp.Trigger.Kind == campaigns.OnEvent,
			Contacts: sp.Enrol, Examples: sp.Examples, Missed: sp.Missed, MissedExamples: sp.MissedExamples})
	}
	for _, op := range preview.Offers {
		res.Offers = append(res.Offers, dryRunCampaign{Name: op.Name, Contacts: op.Reward, Examples: op.Examples, Eligible: op.Eligible})
	}
	var parts []string
	for _, ef := range rep.Effects {
		d := dryRunEffect{Rule: ef.Rule, From: string(ef.From), To: string(ef.To), Contacts: ef.Contacts, Examples: ef.Examples}
		if ef.Rule == e.rule.Name {
			res.Effects = append(res.Effects, d)
			parts = append(parts, fmt.Sprintf("%s contacts from %s to %s", humanize.Comma(int64(ef.Contacts)), ef.From, ef.To))
		} else {
			res.Others = append(res.Others, d)
		}
	}
	if len(parts) == 0 {
		res.Summary = "would move no contacts now"
	} else {
		res.Summary = "would move " + strings.Join(parts, ", ")
	}
	if len(res.Loops) > 0 {
		res.Summary += "; and rules would move contacts back and forth on every pass (see loops)"
	}
	return res, nil
}

// loopsError is why a rule edit is not saved: the loops it makes, or ""
// (the loops it is not part of are not its to answer for).
func (r dryRunResult) loopsError() string {
	var out []string
	for _, l := range r.Loops {
		if slices.Contains(l.Rules, r.Rule) {
			out = append(out, l.Sentence)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "not saved: " + strings.Join(out, "; ") + ". Change a condition so that these rules cannot all hold at once."
}

// Template previews.

// previewResult is a template rendered for one contact.
type previewResult struct {
	Template   string `json:"template"`
	Version    int    `json:"version"`
	ContactID  int64  `json:"contact_id"`
	Tone       string `json:"tone"`
	ToneReason string `json:"tone_reason"`
	Subject    string `json:"subject"`
	Text       string `json:"text"`
	HTML       string `json:"html,omitempty"`
}

// preview renders a template for a contact as `waymark preview` does
// (campaigns.PreviewTemplate): with the tone the tone rules choose, or the
// one pinned. A non-empty field names what was not found or is not one of
// the journey's.
func (s *Server) preview(ctx context.Context, name, contactRef, pinned string) (*previewResult, string, error) {
	t, version, err := s.st.Template(ctx, name)
	if errors.Is(err, journey.ErrNotFound) {
		return nil, "name", fmt.Errorf("no template %q", name)
	}
	if err != nil {
		return nil, "", err
	}
	compiled, err := templates.Compile(t)
	if err != nil {
		return nil, "", err
	}
	id, err := s.st.ContactRef(ctx, contactRef)
	if errors.Is(err, contact.ErrNotFound) {
		return nil, "contact", fmt.Errorf("contact: no contact %q", contactRef)
	}
	if err != nil {
		return nil, "", err
	}
	p, err := campaigns.PreviewTemplate(ctx, s.st, compiled, id, pinned, "the tone parameter", strings.TrimRight(s.cfg.PublicURL, "/"), s.now())
	var te *campaigns.ToneError
	switch {
	case errors.As(err, &te):
		return nil, "tone", fmt.Errorf("tone: %w", err)
	case errors.Is(err, lifecycle.ErrNoContact):
		return nil, "contact", fmt.Errorf("contact: no contact %q", contactRef)
	case err != nil:
		return nil, "", err
	}
	return &previewResult{Template: name, Version: version, ContactID: id, Tone: p.Choice.Tone, ToneReason: p.Choice.Reason,
		Subject: p.Rendered.Subject, Text: p.Rendered.Text, HTML: p.Rendered.HTML}, "", nil
}

// Figures.

// overviewFigures is the overview page and /api/v1/stats.
type overviewFigures struct {
	From        string           `json:"from"`
	To          string           `json:"to"`
	RefreshedAt *time.Time       `json:"refreshed_at"`
	Stages      []stageCount     `json:"stages"`
	Flows       []stats.Flow     `json:"flows"`
	Email       []stats.EmailDay `json:"email_per_day"`
	EmailTotal  stats.EmailDay   `json:"email_total"`
}

type stageCount struct {
	Stage string `json:"stage"`
	N     int64  `json:"contacts"`
}

func (s *Server) overview(ctx context.Context, p stats.Period) (overviewFigures, error) {
	o := overviewFigures{From: day(p.From), To: day(p.To)}
	st, err := s.st.StatsStateNow(ctx)
	if err != nil && !errors.Is(err, stats.ErrNotRefreshed) {
		return o, err
	}
	if err == nil {
		o.RefreshedAt = &st.RefreshedAt
	}
	for _, stage := range rule.Stages {
		o.Stages = append(o.Stages, stageCount{string(stage), st.Stages[string(stage)]})
	}
	flows, err := s.st.Flows(ctx, p)
	if err != nil {
		return o, err
	}
	// Between stages, all rules together.
	type pair struct{ from, to string }
	sum := map[pair]int64{}
	for _, f := range flows {
		sum[pair{f.From, f.To}] += f.N
	}
	for k, n := range sum {
		o.Flows = append(o.Flows, stats.Flow{From: k.from, To: k.to, N: n})
	}
	slices.SortFunc(o.Flows, func(a, b stats.Flow) int {
		if c := stageIdx(a.From) - stageIdx(b.From); c != 0 {
			return c
		}
		return stageIdx(a.To) - stageIdx(b.To)
	})
	if o.Flows == nil {
		o.Flows = []stats.Flow{}
	}
	days, err := s.st.EmailDays(ctx, p)
	if err != nil {
		return o, err
	}
	// Every day of the period, zero or not.
	byDay := map[string]stats.EmailDay{}
	for _, d := range days {
		byDay[day(d.Day.UTC())] = d
	}
	for d := p.From; d.Before(p.To); d = d.AddDate(0, 0, 1) {
		e, ok := byDay[day(d)]
		if !ok {
			e = stats.EmailDay{Day: d}
		}
		e.Day = d
		o.Email = append(o.Email, e)
		o.EmailTotal.Sent += e.Sent
		o.EmailTotal.Opened += e.Opened
		o.EmailTotal.Clicked += e.Clicked
		o.EmailTotal.Unsubscribed += e.Unsubscribed
	}
	return o, nil
}

func stageIdx(s string) int {
	for i, st := range rule.Stages {
		if string(st) == s {
			return i
		}
	}
	return len(rule.Stages)
}

// healthFigures compares journey health in a period with a baseline.
type healthFigures struct {
	Period      [2]string     `json:"period"`
	Baseline    [2]string     `json:"baseline"`
	Stages      []stageHealth `json:"stages"`
	Regressions []regression  `json:"regressions"`
	LastChange  *time.Time    `json:"last_rule_change,omitempty"`
}

// stageHealth is one stage: its conversion to the next stage (moves on to
// the next stage per entry into this one), and the median time contacts
// who left it had spent in it.
type stageHealth struct {
	Stage           string   `json:"stage"`
	Next            string   `json:"next,omitempty"`
	Entered         int64    `json:"entered"`
	MovedOn         int64    `json:"moved_on"`
	Conversion      *float64 `json:"conversion"`
	BaseEntered     int64    `json:"baseline_entered"`
	BaseMovedOn     int64    `json:"baseline_moved_on"`
	BaseConversion  *float64 `json:"baseline_conversion"`
	MedianHours     *float64 `json:"median_hours_in_stage"`
	BaseMedianHours *float64 `json:"baseline_median_hours_in_stage"`
	Left            int64    `json:"left"`
	BaseLeft        int64    `json:"baseline_left"`
}

// regression is the contacts one rule moved back to an earlier stage.
type regression struct {
	Rule     string `json:"rule"`
	From     string `json:"from"`
	To       string `json:"to"`
	N        int64  `json:"contacts"`
	Baseline int64  `json:"baseline"`
}

// healthPeriods reads the period (from, to) and the baseline
// (base_from, base_to); the baseline defaults to the as-long period just
// before.
func (s *Server) healthPeriods(r *http.Request) (stats.Period, stats.Period, string, error) {
	cur, field, err := s.period(r, "from", "to", 30, 0)
	if err != nil {
		return cur, cur, field, err
	}
	length := int(cur.To.Sub(cur.From).Hours()/24 + 0.5)
	defTo := cur.From
	bto, err := dayParam(r, "base_to", defTo)
	if err != nil {
		return cur, cur, "base_to", err
	}
	bfrom, err := dayParam(r, "base_from", bto.AddDate(0, 0, -length))
	if err != nil {
		return cur, cur, "base_from", err
	}
	if !bfrom.Before(bto) {
		return cur, cur, "base_from", errors.New("base_from: must be before base_to")
	}
	return cur, stats.Period{From: bfrom, To: bto}, "", nil
}

func (s *Server) health(ctx context.Context, cur, base stats.Period) (healthFigures, error) {
	h := healthFigures{Period: [2]string{day(cur.From), day(cur.To)}, Baseline: [2]string{day(base.From), day(base.To)}}
	a, err := s.st.HealthFigures(ctx, cur)
	if err != nil {
		return h, err
	}
	b, err := s.st.HealthFigures(ctx, base)
	if err != nil {
		return h, err
	}
	movedOn := func(f stats.StageFigures, from, to string) int64 {
		var n int64
		for _, m := range f.Moves {
			if m.From == from && m.To == to {
				n += m.N
			}
		}
		return n
	}
	for i, st := range rule.Stages {
		sh := stageHealth{Stage: string(st), Entered: a.Entries[string(st)], BaseEntered: b.Entries[string(st)]}
		if i+1 < len(rule.Stages) {
			sh.Next = string(rule.Stages[i+1])
			sh.MovedOn = movedOn(a, sh.Stage, sh.Next)
			sh.BaseMovedOn = movedOn(b, sh.Stage, sh.Next)
			sh.Conversion = ratio(sh.MovedOn, sh.Entered)
			sh.BaseConversion = ratio(sh.BaseMovedOn, sh.BaseEntered)
		}
		sh.MedianHours, sh.Left = medianHours(a.Stays[sh.Stage])
		sh.BaseMedianHours, sh.BaseLeft = medianHours(b.Stays[sh.Stage])
		h.Stages = append(h.Stages, sh)
	}
	type key struct{ rule, from, to string }
	regs := map[key]*regression{}
	var order []key
	add := func(f stats.StageFigures, cur bool) {
		for _, m := range f.Moves {
			if stageIdx(m.To) >= stageIdx(m.From) {
				continue
			}
			k := key{m.Rule, m.From, m.To}
			if regs[k] == nil {
				regs[k] = &regression{Rule: m.Rule, From: m.From, To: m.To}
				order = append(order, k)
			}
			if cur {
				regs[k].N += m.N
			} else {
				regs[k].Baseline += m.N
			}
		}
	}
	add(a, true)
	add(b, false)
	h.Regressions = []regression{}
	for _, k := range order {
		h.Regressions = append(h.Regressions, *regs[k])
	}
	slices.SortStableFunc(h.Regressions, func(x, y regression) int { return int(y.N - x.N) })
	rules, err := s.st.RuleInfos(ctx)
	if err != nil {
		return h, err
	}
	for _, r := range rules {
		if h.LastChange == nil || r.UpdatedAt.After(*h.LastChange) {
			t := r.UpdatedAt
			h.LastChange = &t
		}
	}
	return h, nil
}

func ratio(a, b int64) *float64 {
	if b == 0 {
		return nil
	}
	r := float64(a) / float64(b)
	return &r
}

// medianHours estimates the median of stays from their half-octave
// histogram (bucket b: [2^(b/2)-1, 2^((b+1)/2)-1) hours), interpolating
// geometrically inside the bucket holding the middle stay.
func medianHours(buckets map[int]int64) (*float64, int64) {
	var total int64
	var keys []int
	for b, n := range buckets {
		total += n
		keys = append(keys, b)
	}
	if total == 0 {
		return nil, 0
	}
	slices.Sort(keys)
	half := float64(total) / 2
	var seen float64
	for _, b := range keys {
		n := float64(buckets[b])
		if seen+n >= half {
			lo := math.Pow(2, float64(b)/2)
			hi := math.Pow(2, float64(b+1)/2)
			frac := (half - seen) / n
			v := lo*math.Pow(hi/lo, frac) - 1
			return &v, total
		}
		seen += n
	}
	return nil, total
}

// offerRow compares an offer's drawn contacts with the eligible ones not
// drawn.
type offerRow struct {
	Offer          string   `json:"offer"`
	Drawn          int64    `json:"drawn"`
	DrawnConverted int64    `json:"drawn_converted"`
	DrawnRate      *float64 `json:"drawn_conversion"`
	NotDrawn       int64    `json:"not_drawn"`
	NotConverted   int64    `json:"not_drawn_converted"`
	NotRate        *float64 `json:"not_drawn_conversion"`
}

func offerRows(list []journey.Named, figs []stats.OfferFigures) []offerRow {
	by := map[string]*offerRow{}
	var out []offerRow
	var names []string
	for _, o := range list {
		names = append(names, o.Name)
	}
	for _, f := range figs {
		if !slices.Contains(names, f.Offer) {
			names = append(names, f.Offer)
		}
	}
	for _, n := range names {
		by[n] = &offerRow{Offer: n}
	}
	for _, f := range figs {
		r := by[f.Offer]
		if f.Drawn {
			r.Drawn, r.DrawnConverted = f.Eligible, f.Converted
		} else {
			r.NotDrawn, r.NotConverted = f.Eligible, f.Converted
		}
	}
	for _, n := range names {
		r := by[n]
		r.DrawnRate = ratio(r.DrawnConverted, r.Drawn)
		r.NotRate = ratio(r.NotConverted, r.NotDrawn)
		out = append(out, *r)
	}
	return nonNil(out)
}
