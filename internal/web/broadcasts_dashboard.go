package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/rule"
)

// The dashboard's broadcasts and segments (issue 19): a page listing the
// segments (size and trend) and the broadcasts, and a page per broadcast
// with each run's progress, its variants' figures and the A/B decision.
func (s *Server) routesBroadcastPages() {
	d := func(pattern string, fn http.HandlerFunc) { s.mux.Handle(pattern, s.dash(fn)) }
	d("GET /dashboard/broadcasts", s.broadcastsPage)
	d("POST /dashboard/broadcasts", s.broadcastSave)
	d("GET /dashboard/broadcasts/{name}", s.broadcastPage)
	d("GET /dashboard/broadcasts/{name}/edit", s.broadcastEditPage)
	d("POST /dashboard/broadcasts/{name}", s.broadcastAction)
}

// broadcastForm is the dashboard's form for a broadcast: what it shows
// (the choices, the values) and what it read.
type broadcastForm struct {
	Edit      bool // editing Name, rather than creating
	Stages    []string
	Segments  []string
	Templates []string
	In        broadcastJSON
	// Variants are the test's four lines, as typed: a template, or
	// "subject: …".
	Variants [campaigns.MaxVariants]string
}

// HasStage reports whether the form's audience has stage st.
func (f broadcastForm) HasStage(st string) bool { return slices.Contains(f.In.Audience.Stages, st) }

// newForm is the form with its choices, for in.
func (s *Server) newForm(r *http.Request, in broadcastJSON, edit bool) (broadcastForm, error) {
	f := broadcastForm{Edit: edit, In: in}
	for _, st := range rule.Stages {
		f.Stages = append(f.Stages, string(st))
	}
	segs, err := s.st.Segments(r.Context())
	if err != nil {
		return f, err
	}
	for _, sg := range segs {
		f.Segments = append(f.Segments, sg.Name)
	}
	tmpls, err := s.st.TemplateList(r.Context())
	if err != nil {
		return f, err
	}
	for _, t := range tmpls {
		f.Templates = append(f.Templates, t.Name)
	}
	if in.Test != nil {
		for i, v := range in.Test.Variants {
			if i < len(f.Variants) {
				f.Variants[i] = v.Template
				if v.Subject != "" {
					f.Variants[i] = "subject: " + v.Subject
				}
			}
		}
	}
	return f, nil
}

// formBroadcast reads the form posted.
func formBroadcast(r *http.Request) (broadcastJSON, *apiError) {
	in := broadcastJSON{Name: strings.TrimSpace(r.PostFormValue("name")), Template: r.PostFormValue("template"),
		SendAt: strings.TrimSpace(r.PostFormValue("send_at")), Schedule: strings.TrimSpace(r.PostFormValue("schedule")),
		Audience: audienceJSON{Stages: r.PostForm["stages"], Segment: r.PostFormValue("segment")}}
	number := func(field string, dst *float64) *apiError {
		if v := strings.TrimSpace(r.PostFormValue(field)); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return &apiError{Error: field + ": not a number", Field: field}
			}
			*dst = f
		}
		return nil
	}
	if e := number("throttle", &in.Throttle); e != nil {
		return in, e
	}
	var vs []variantJSON
	for _, line := range r.PostForm["variant"] {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "subject:"):
			vs = append(vs, variantJSON{Subject: strings.TrimSpace(strings.TrimPrefix(line, "subject:"))})
		default:
			vs = append(vs, variantJSON{Template: line})
		}
	}
	if len(vs) > 0 {
		in.Test = &abTestJSON{Variants: vs, PickBy: r.PostFormValue("pick_by"), After: strings.TrimSpace(r.PostFormValue("after"))}
		if e := number("test.share", &in.Test.Share); e != nil {
			return in, e
		}
		if v := strings.TrimSpace(r.PostFormValue("test.min_results")); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return in, &apiError{Error: "test.min_results: not a whole number", Field: "test.min_results"}
			}
			in.Test.MinResults = n
		}
	}
	return in, nil
}

// broadcastSave creates a broadcast (the broadcasts page's form) or
// edits one (its page's), checked as the API checks it.
func (s *Server) broadcastSave(w http.ResponseWriter, r *http.Request) {
	edit := r.PostFormValue("edit") == "true"
	in, aerr := formBroadcast(r)
	if aerr == nil {
		var err error
		if _, _, aerr, err = s.storeBroadcast(r.Context(), in, !edit); err != nil {
			s.failed(w, r, err)
			return
		}
	}
	if aerr != nil {
		f, err := s.newForm(r, in, edit)
		if err != nil {
			s.failed(w, r, err)
			return
		}
		page := "broadcasts"
		data := map[string]any{"Form": f}
		if !edit {
			if err := s.listData(r, data); err != nil {
				s.failed(w, r, err)
				return
			}
		} else {
			page = "broadcast_edit"
		}
		s.render(w, r, http.StatusBadRequest, page, view{Title: "Broadcasts & segments", Nav: "broadcasts", Error: aerr.Error, Data: data})
		return
	}
	http.Redirect(w, r, "/dashboard/broadcasts/"+url.PathEscape(in.Name), http.StatusSeeOther)
}

// pageBroadcast reads {name} for a page; it writes the 404 itself.
func (s *Server) pageBroadcast(w http.ResponseWriter, r *http.Request) (campaigns.StoredBroadcast, bool) {
	b, err := s.st.Broadcast(r.Context(), r.PathValue("name"))
	if errors.Is(err, campaigns.ErrNoBroadcast) {
		s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found", Error: "no broadcast " + r.PathValue("name")})
		return b, false
	}
	if err != nil {
		s.failed(w, r, err)
		return b, false
	}
	return b, true
}

// broadcastEditPage is a broadcast's form, filled in.
func (s *Server) broadcastEditPage(w http.ResponseWriter, r *http.Request) {
	b, ok := s.pageBroadcast(w, r)
	if !ok {
		return
	}
	f, err := s.newForm(r, toJSON(b.Broadcast), true)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "broadcast_edit", view{Title: "Edit broadcast " + b.Name, Nav: "broadcasts", Data: map[string]any{"Form": f}})
}

// segmentRow is a segment on the dashboard.
type segmentRow struct {
	campaigns.SegmentSummary
	Trend template.HTML
}

// broadcastRow is a broadcast on the dashboard's list.
type broadcastRow struct {
	campaigns.StoredBroadcast
	When string
}

func (s *Server) broadcastsPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	f, err := s.newForm(r, broadcastJSON{}, false)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	data := map[string]any{"Form": f}
	if err := s.listData(r, data); err != nil {
		s.failed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "broadcasts", view{Title: "Broadcasts & segments", Nav: "broadcasts", Took: time.Since(start).Round(time.Microsecond).String(), Data: data})
}

// listData adds the segments and the broadcasts to a page's data.
func (s *Server) listData(r *http.Request, data map[string]any) error {
	segs, err := s.st.SegmentSummaries(r.Context(), 30)
	if err != nil {
		return err
	}
	rows := make([]segmentRow, len(segs))
	for i, sg := range segs {
		rows[i] = segmentRow{SegmentSummary: sg, Trend: trendSVG(sg.Trend)}
	}
	bs, err := s.st.Broadcasts(r.Context())
	if err != nil {
		return err
	}
	list := make([]broadcastRow, len(bs))
	for i, b := range bs {
		list[i] = broadcastRow{StoredBroadcast: b, When: b.When()}
	}
	data["Segments"], data["Broadcasts"] = rows, list
	return nil
}

func (s *Server) broadcastPage(w http.ResponseWriter, r *http.Request) {
	s.showBroadcast(w, r, "", "", nil)
}

func (s *Server) showBroadcast(w http.ResponseWriter, r *http.Request, done, problem string, preview *campaigns.AudiencePreview) {
	start := time.Now()
	b, ok := s.pageBroadcast(w, r)
	if !ok {
		return
	}
	runs, err := s.st.BroadcastProgress(r.Context(), b.Name)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	p, err := s.reportDays(r)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	// Its variants' figures when it tests them, else its own.
	earned, err := s.ownReport(r.Context(), "variant-report", "variant", report.ByVariant, p, func(row report.Row) bool {
		return strings.HasPrefix(row.Key, b.Name+"/")
	})
	if err == nil && len(earned.Rows) == 0 {
		earned, err = s.ownReport(r.Context(), "variant-report", "broadcast", report.ByBroadcast, p, func(row report.Row) bool { return row.Key == b.Name })
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	var labels []string
	after := ""
	if b.Test != nil {
		for i := range b.Test.Variants {
			labels = append(labels, b.Test.Label(i))
		}
		after = journey.FormatDuration(b.Test.After)
	}
	s.render(w, r, http.StatusOK, "broadcast", view{Title: "Broadcast " + b.Name, Nav: "broadcasts", Error: problem, Took: time.Since(start).Round(time.Microsecond).String(),
		Data: map[string]any{"B": b, "When": b.When(), "Variants": labels, "After": after, "Runs": runsOf(runs), "Done": done, "Preview": preview, "Earned": earned}})
}

// broadcastAction pauses, resumes or cancels a broadcast from its page.
func (s *Server) broadcastAction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var (
		n   int
		err error
	)
	action := r.PostFormValue("action")
	switch action {
	case "dry-run":
		b, ok := s.pageBroadcast(w, r)
		if !ok {
			return
		}
		p, err := s.previewBroadcast(r.Context(), b.Broadcast)
		switch {
		case errors.Is(err, errDryRunBusy):
			s.showBroadcast(w, r, "", err.Error(), nil)
		case err != nil:
			s.failed(w, r, err)
		default:
			s.showBroadcast(w, r, "", "", &p)
		}
		return
	case "pause", "resume", "cancel":
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		if reason == "" {
			reason = "cancelled on the dashboard"
		}
		n, err = s.steer(r.Context(), name, action, reason)
	default:
		s.badRequest(w, r, fmt.Errorf("unknown action %q", action))
		return
	}
	switch {
	case errors.Is(err, campaigns.ErrBroadcastState):
		s.showBroadcast(w, r, "", err.Error(), nil)
	case err != nil:
		s.failed(w, r, err)
	default:
		what := map[string]string{"pause": "paused: %d queued emails wait", "resume": "resumed: %d emails released", "cancel": "cancelled: %d queued emails cancelled"}[action]
		s.showBroadcast(w, r, fmt.Sprintf(what, n), "", nil)
	}
}

// trendSVG draws a segment's daily sizes as a small line.
func trendSVG(days []campaigns.SegmentSize) template.HTML {
	const w, h = 160.0, 32.0
	if len(days) == 0 {
		return ""
	}
	var max int64 = 1
	for _, d := range days {
		max = max64(max, d.Members)
	}
	var pts []string
	for i, d := range days {
		x := w / 2
		if len(days) > 1 {
			x = 2 + (w-4)*float64(i)/float64(len(days)-1)
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, h-2-(h-4)*float64(d.Members)/float64(max)))
	}
	return template.HTML(fmt.Sprintf(`<svg class="trend" role="img" aria-label="size a day, %s to %s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" xmlns="http://www.w3.org/2000/svg"><polyline fill="none" stroke="#219ebc" stroke-width="2" points="%s"/></svg>`,
		days[0].Day.Format("Jan 2"), days[len(days)-1].Day.Format("Jan 2"), w, h, w, h, strings.Join(pts, " ")))
}
