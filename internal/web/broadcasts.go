package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// routesBroadcasts adds segments and broadcasts to the API (issue 19).
func (s *Server) routesBroadcasts() {
	h := func(pattern string, fn http.HandlerFunc) { s.mux.Handle(pattern, s.api(fn)) }
	h("GET /api/v1/segments", s.apiSegments)
	h("GET /api/v1/segments/{name}/members", s.apiSegmentMembers)
	h("GET /api/v1/broadcasts", s.apiBroadcasts)
	h("POST /api/v1/broadcasts", s.apiCreateBroadcast)
	h("GET /api/v1/broadcasts/{name}", s.apiBroadcast)
	h("PUT /api/v1/broadcasts/{name}", s.apiEditBroadcast)
	h("POST /api/v1/broadcasts/{name}/schedule", s.apiScheduleBroadcast)
	h("POST /api/v1/broadcasts/{name}/pause", s.apiSteerBroadcast)
	h("POST /api/v1/broadcasts/{name}/resume", s.apiSteerBroadcast)
	h("POST /api/v1/broadcasts/{name}/cancel", s.apiSteerBroadcast)
	h("POST /api/v1/broadcasts/{name}/dry-run", s.apiBroadcastDryRun)
	h("POST /api/v1/broadcasts/{name}/test", s.apiBroadcastTest)
}

func (s *Server) apiSegments(w http.ResponseWriter, r *http.Request) {
	list, err := s.st.SegmentSummaries(r.Context(), 30)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page[campaigns.SegmentSummary]{Items: nonNil(list)})
}

func (s *Server) apiSegmentMembers(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		fieldError(w, http.StatusBadRequest, "limit", "%v", err)
		return
	}
	var after int64
	if a := r.URL.Query().Get("after"); a != "" {
		if after, err = strconv.ParseInt(a, 10, 64); err != nil || after < 0 {
			fieldError(w, http.StatusBadRequest, "after", "after: not a cursor from this listing (use the next value of the previous page)")
			return
		}
	}
	members, next, err := s.st.SegmentMembers(r.Context(), r.PathValue("name"), after, limit)
	if errors.Is(err, campaigns.ErrNoSegment) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such segment", Field: "name"})
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	p := page[campaigns.SegmentMember]{Items: nonNil(members)}
	if next > 0 {
		p.Next = strconv.FormatInt(next, 10)
	}
	writeJSON(w, http.StatusOK, p)
}

// broadcastJSON is a broadcast as the API reads and writes it.
type broadcastJSON struct {
	Name     string       `json:"name"`
	Audience audienceJSON `json:"audience"`
	Template string       `json:"template"`
	SendAt   string       `json:"send_at,omitempty"`
	Schedule string       `json:"schedule,omitempty"`
	Throttle float64      `json:"throttle,omitempty"`
	Test     *abTestJSON  `json:"test,omitempty"`
}

type audienceJSON struct {
	Stages  []string `json:"stages,omitempty"`
	Segment string   `json:"segment,omitempty"`
}

type abTestJSON struct {
	Variants   []variantJSON `json:"variants"`
	Share      float64       `json:"share"`
	PickBy     string        `json:"pick_by"`
	After      string        `json:"after"`
	MinResults int           `json:"min_results,omitempty"`
}

type variantJSON struct {
	Template string `json:"template,omitempty"`
	Subject  string `json:"subject,omitempty"`
}

func toJSON(b campaigns.Broadcast) broadcastJSON {
	out := broadcastJSON{Name: b.Name, Template: b.Template, SendAt: b.SendAt, Schedule: b.Schedule, Throttle: b.Throttle,
		Audience: audienceJSON{Segment: b.Audience.Segment}}
	for _, st := range b.Audience.Stages {
		out.Audience.Stages = append(out.Audience.Stages, string(st))
	}
	if t := b.Test; t != nil {
		out.Test = &abTestJSON{Share: t.Share, PickBy: t.PickBy, After: journey.FormatDuration(t.After), MinResults: t.MinResults}
		for _, v := range t.Variants {
			out.Test.Variants = append(out.Test.Variants, variantJSON(v))
		}
	}
	return out
}

// fromJSON reads a broadcast from the API; a mistake names its field.
func fromJSON(in broadcastJSON) (campaigns.Broadcast, *apiError) {
	b := campaigns.Broadcast{Name: in.Name, Template: in.Template, SendAt: in.SendAt, Schedule: in.Schedule, Throttle: in.Throttle,
		Audience: campaigns.Audience{Segment: in.Audience.Segment}}
	for _, st := range in.Audience.Stages {
		b.Audience.Stages = append(b.Audience.Stages, rule.Stage(st))
	}
	if t := in.Test; t != nil {
		b.Test = &campaigns.ABTest{Share: t.Share, PickBy: t.PickBy, MinResults: t.MinResults}
		if t.After != "" {
			d, err := journey.ParseDuration(t.After)
			if err != nil {
				return b, &apiError{Error: "test.after: " + err.Error(), Field: "test.after"}
			}
			b.Test.After = d
		}
		for _, v := range t.Variants {
			b.Test.Variants = append(b.Test.Variants, campaigns.Variant(v))
		}
	}
	if errs := b.Check(); len(errs) > 0 {
		return b, &apiError{Error: errs[0].Error(), Field: errs[0].Field}
	}
	return b, nil
}

// checkRefs refuses a broadcast whose templates or segment do not exist,
// or whose test subjects do not compile.
func (s *Server) checkRefs(ctx context.Context, b campaigns.Broadcast) (*apiError, error) {
	// template returns the stored template called name (ok false when
	// there is none).
	template := func(name string) (templates.Template, bool, error) {
		t, _, err := s.st.Template(ctx, name)
		if errors.Is(err, journey.ErrNotFound) {
			return t, false, nil
		}
		return t, err == nil, err
	}
	if _, ok, err := template(b.Template); err != nil || !ok {
		return &apiError{Error: fmt.Sprintf("template: no template %q (GET /api/v1/templates)", b.Template), Field: "template"}, err
	}
	if b.Test != nil {
		for i, v := range b.Test.Variants {
			field := fmt.Sprintf("test.variants[%d]", i)
			t, ok, err := template(b.TemplateOf(i))
			if err != nil || !ok {
				return &apiError{Error: fmt.Sprintf("%s.template: no template %q", field, v.Template), Field: field + ".template"}, err
			}
			if v.Subject != "" {
				if err := campaigns.CheckSubject(t, v.Subject); err != nil {
					return &apiError{Error: fmt.Sprintf("%s.subject: %v", field, err), Field: field + ".subject"}, nil
				}
			}
		}
	}
	if b.Audience.Segment != "" {
		segs, err := s.st.Segments(ctx)
		if err != nil {
			return nil, err
		}
		found := false
		for _, sg := range segs {
			found = found || sg.Name == b.Audience.Segment
		}
		if !found {
			return &apiError{Error: fmt.Sprintf("audience.segment: no segment %q (GET /api/v1/segments)", b.Audience.Segment), Field: "audience.segment"}, nil
		}
	}
	return nil, nil
}

// broadcastAnswer is a broadcast with its state, as the API shows it.
type broadcastAnswer struct {
	broadcastJSON
	Source      string     `json:"source"`
	State       string     `json:"state"`
	StateReason string     `json:"state_reason,omitempty"`
	LastRun     *time.Time `json:"last_run,omitempty"`
}

func answerOf(b campaigns.StoredBroadcast) broadcastAnswer {
	a := broadcastAnswer{broadcastJSON: toJSON(b.Broadcast), Source: b.Source, State: b.State, StateReason: b.StateReason}
	if !b.LastRun.IsZero() {
		a.LastRun = &b.LastRun
	}
	return a
}

func (s *Server) apiBroadcasts(w http.ResponseWriter, r *http.Request) {
	list, err := s.st.Broadcasts(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := make([]broadcastAnswer, len(list))
	for i, b := range list {
		out[i] = answerOf(b)
	}
	writeJSON(w, http.StatusOK, page[broadcastAnswer]{Items: out})
}

// runAnswer is a run with its progress, as the API shows it.
type runAnswer struct {
	ID           int64                       `json:"id"`
	ScheduledFor time.Time                   `json:"scheduled_for"`
	Local        bool                        `json:"local"`
	StartedAt    time.Time                   `json:"started_at"`
	ResolvedAt   *time.Time                  `json:"resolved_at"`
	DecideAt     *time.Time                  `json:"decide_at,omitempty"`
	Progress     campaigns.Progress          `json:"progress"`
	Reasons      []campaigns.ReasonCount     `json:"reasons"`
	Variants     []campaigns.VariantProgress `json:"variants"`
	Decision     *decisionJSON               `json:"decision,omitempty"`
}

type decisionJSON struct {
	PickBy   string          `json:"pick_by"`
	Rule     string          `json:"rule"`
	Winner   int             `json:"winner"` // from 1
	Kept     bool            `json:"kept"`
	Reason   string          `json:"reason"`
	At       time.Time       `json:"at"`
	Variants []variantResult `json:"variants"`
}

type variantResult struct {
	Variant  int     `json:"variant"` // from 1
	Label    string  `json:"label"`
	Template string  `json:"template"`
	Subject  string  `json:"subject,omitempty"`
	Sent     int     `json:"sent"`
	People   int     `json:"people"`
	Rate     float64 `json:"rate"`
}

func runsOf(runs []campaigns.RunProgress) []runAnswer {
	out := make([]runAnswer, len(runs))
	for i, r := range runs {
		out[i] = runAnswer{ID: r.Run.ID, ScheduledFor: r.Run.ScheduledFor, Local: r.Run.Local, StartedAt: r.Run.StartedAt, ResolvedAt: r.Run.ResolvedAt,
			DecideAt: r.Run.DecideAt, Progress: r.Progress, Reasons: nonNil(r.Reasons), Variants: nonNil(r.Variants)}
		if d := r.Run.Decision; d != nil {
			dj := &decisionJSON{PickBy: d.PickBy, Rule: d.Rule, Winner: d.Winner + 1, Kept: d.Kept, Reason: d.Reason, At: d.At}
			for _, v := range d.Variants {
				dj.Variants = append(dj.Variants, variantResult{Variant: v.Variant + 1, Label: v.Label, Template: v.Template, Subject: v.Subject, Sent: v.Sent, People: v.People, Rate: v.Rate})
			}
			out[i].Decision = dj
		}
	}
	return out
}

// broadcastParam reads {name}; it writes the 404 itself.
func (s *Server) broadcastParam(w http.ResponseWriter, r *http.Request) (campaigns.StoredBroadcast, bool) {
	b, err := s.st.Broadcast(r.Context(), r.PathValue("name"))
	if errors.Is(err, campaigns.ErrNoBroadcast) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such broadcast", Field: "name"})
		return b, false
	}
	if err != nil {
		s.internal(w, r, err)
		return b, false
	}
	return b, true
}

func (s *Server) apiBroadcast(w http.ResponseWriter, r *http.Request) {
	b, ok := s.broadcastParam(w, r)
	if !ok {
		return
	}
	runs, err := s.st.BroadcastProgress(r.Context(), b.Name)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"broadcast": answerOf(b), "runs": runsOf(runs)})
}

// saveBroadcast checks and saves a broadcast from the API.
func (s *Server) saveBroadcast(w http.ResponseWriter, r *http.Request, in broadcastJSON, create bool) {
	saved, status, aerr, err := s.storeBroadcast(r.Context(), in, create)
	switch {
	case err != nil:
		s.internal(w, r, err)
	case aerr != nil:
		writeJSON(w, status, aerr)
	case create:
		writeJSON(w, http.StatusCreated, answerOf(saved))
	default:
		writeJSON(w, http.StatusOK, answerOf(saved))
	}
}

// storeBroadcast checks a broadcast given through the API or the
// dashboard's form and saves it (create: a new one; else an edit). A
// mistake in it comes back as aerr with the HTTP status that says so; err
// is a failure of Waymark's own.
func (s *Server) storeBroadcast(ctx context.Context, in broadcastJSON, create bool) (saved campaigns.StoredBroadcast, status int, aerr *apiError, err error) {
	b, aerr := fromJSON(in)
	if aerr == nil {
		if aerr, err = s.checkRefs(ctx, b); err != nil {
			return saved, 0, nil, err
		}
	}
	if aerr != nil {
		return saved, http.StatusBadRequest, aerr, nil
	}
	saved, err = s.st.SaveBroadcast(ctx, b, create, s.now())
	switch {
	case errors.Is(err, campaigns.ErrBroadcastExists):
		return saved, http.StatusConflict, &apiError{Error: fmt.Sprintf("a broadcast %q exists (edit it with PUT /api/v1/broadcasts/%s, or on its page in the dashboard)", b.Name, b.Name), Field: "name"}, nil
	case errors.Is(err, campaigns.ErrNoBroadcast):
		return saved, http.StatusNotFound, &apiError{Error: "no such broadcast", Field: "name"}, nil
	case errors.Is(err, campaigns.ErrBroadcastState):
		return saved, http.StatusConflict, &apiError{Error: err.Error()}, nil
	}
	return saved, 0, nil, err
}

func (s *Server) apiCreateBroadcast(w http.ResponseWriter, r *http.Request) {
	var in broadcastJSON
	if s.decode(w, r, &in) {
		s.saveBroadcast(w, r, in, true)
	}
}

func (s *Server) apiEditBroadcast(w http.ResponseWriter, r *http.Request) {
	var in broadcastJSON
	if !s.decode(w, r, &in) {
		return
	}
	if in.Name == "" {
		in.Name = r.PathValue("name")
	}
	if in.Name != r.PathValue("name") {
		fieldError(w, http.StatusBadRequest, "name", "name: %q is not the broadcast edited (%q); a broadcast is not renamed", in.Name, r.PathValue("name"))
		return
	}
	s.saveBroadcast(w, r, in, false)
}

// apiScheduleBroadcast gives a broadcast its time: send_at or schedule.
func (s *Server) apiScheduleBroadcast(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SendAt   string `json:"send_at"`
		Schedule string `json:"schedule"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	b, ok := s.broadcastParam(w, r)
	if !ok {
		return
	}
	if in.SendAt == "" && in.Schedule == "" {
		fieldError(w, http.StatusBadRequest, "send_at", "send_at: give send_at (an instant with its zone, or a wall time in each contact's zone) or schedule (a cron spec)")
		return
	}
	j := toJSON(b.Broadcast)
	j.SendAt, j.Schedule = in.SendAt, in.Schedule
	s.saveBroadcast(w, r, j, false)
}

// apiSteerBroadcast pauses, resumes or cancels a broadcast.
func (s *Server) apiSteerBroadcast(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 && !s.decode(w, r, &in) {
		return
	}
	b, ok := s.broadcastParam(w, r)
	if !ok {
		return
	}
	what := r.URL.Path[len("/api/v1/broadcasts/"+b.Name+"/"):]
	if in.Reason == "" {
		in.Reason = "cancelled through the API"
	}
	n, err := s.steer(r.Context(), b.Name, what, in.Reason)
	if errors.Is(err, campaigns.ErrBroadcastState) {
		writeJSON(w, http.StatusConflict, apiError{Error: err.Error()})
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	b, ok = s.broadcastParam(w, r)
	if !ok {
		return
	}
	count := map[string]string{"pause": "waiting", "resume": "released", "cancel": "cancelled"}[what]
	writeJSON(w, http.StatusOK, map[string]any{"broadcast": answerOf(b), count: n})
}

// steer pauses, resumes or cancels broadcast name (action), through the
// API or the dashboard; it returns how many of its emails it held,
// released or cancelled.
func (s *Server) steer(ctx context.Context, name, action, reason string) (int, error) {
	switch action {
	case "pause":
		return s.st.PauseBroadcast(ctx, name)
	case "resume":
		return s.st.ResumeBroadcast(ctx, name, s.now())
	case "cancel":
		return s.st.CancelBroadcast(ctx, name, reason)
	}
	return 0, fmt.Errorf("unknown action %q", action)
}

// apiBroadcastDryRun says who a broadcast would reach now (one dry run at
// a time, as for rules).
func (s *Server) apiBroadcastDryRun(w http.ResponseWriter, r *http.Request) {
	b, ok := s.broadcastParam(w, r)
	if !ok {
		return
	}
	p, err := s.previewBroadcast(r.Context(), b.Broadcast)
	s.answerDryRun(w, r, p, err)
}

// answerDryRun writes a dry run's result, or 429 with Retry-After while
// another one runs.
func (s *Server) answerDryRun(w http.ResponseWriter, r *http.Request, res any, err error) {
	if errors.Is(err, errDryRunBusy) {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusTooManyRequests, apiError{Error: err.Error()})
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// previewBroadcast says who b would reach now; errDryRunBusy while another
// dry run runs.
func (s *Server) previewBroadcast(ctx context.Context, b campaigns.Broadcast) (campaigns.AudiencePreview, error) {
	release, err := s.dryRunSlot()
	if err != nil {
		return campaigns.AudiencePreview{}, err
	}
	defer release()
	defs, err := s.st.Definitions(ctx)
	if err != nil {
		return campaigns.AudiencePreview{}, err
	}
	return campaigns.NewBroadcaster(s.st, s.engine, s.log).Preview(ctx, defs, b, s.st, s.now())
}

// apiBroadcastTest sends the broadcast's email (each variant) to seed
// addresses.
func (s *Server) apiBroadcastTest(w http.ResponseWriter, r *http.Request) {
	var in struct {
		To   []string `json:"to"`
		Tone string   `json:"tone"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	b, ok := s.broadcastParam(w, r)
	if !ok {
		return
	}
	if len(in.To) == 0 || len(in.To) > 20 {
		fieldError(w, http.StatusBadRequest, "to", "to: 1 to 20 seed addresses")
		return
	}
	if s.cfg.Sender == nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "no SMTP server configured (WAYMARK_SMTP_URL): nothing can be sent"})
		return
	}
	res, err := s.cfg.Sender.SendSeeds(r.Context(), b.Broadcast, in.To, in.Tone)
	if err != nil && len(res) == 0 {
		fieldError(w, http.StatusBadRequest, "to", "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sent": nonNil(res)})
}
