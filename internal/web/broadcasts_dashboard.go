package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/store"
)

// The dashboard's broadcasts and segments (issue 19): a page listing the
// segments (size and trend) and the broadcasts, and a page per broadcast
// with each run's progress, its variants' figures and the A/B decision.
func (s *Server) routesBroadcastPages() {
	d := func(pattern string, fn http.HandlerFunc) { s.mux.Handle(pattern, s.dash(fn)) }
	d("GET /dashboard/broadcasts", s.broadcastsPage)
	d("GET /dashboard/broadcasts/{name}", s.broadcastPage)
	d("POST /dashboard/broadcasts/{name}", s.broadcastAction)
}

// segmentRow is a segment on the dashboard.
type segmentRow struct {
	store.SegmentSummary
	Trend template.HTML
}

// broadcastRow is a broadcast on the dashboard's list.
type broadcastRow struct {
	campaigns.StoredBroadcast
	When string
}

func (s *Server) broadcastsPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	segs, err := s.st.SegmentSummaries(r.Context(), 30)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	rows := make([]segmentRow, len(segs))
	for i, sg := range segs {
		rows[i] = segmentRow{SegmentSummary: sg, Trend: trendSVG(sg.Trend)}
	}
	bs, err := s.st.Broadcasts(r.Context())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	list := make([]broadcastRow, len(bs))
	for i, b := range bs {
		list[i] = broadcastRow{StoredBroadcast: b, When: When(b.Broadcast)}
	}
	s.render(w, r, http.StatusOK, "broadcasts", view{Title: "Broadcasts & segments", Nav: "broadcasts", Took: time.Since(start).Round(time.Microsecond).String(),
		Data: map[string]any{"Segments": rows, "Broadcasts": list}})
}

func (s *Server) broadcastPage(w http.ResponseWriter, r *http.Request) {
	s.showBroadcast(w, r, "", "")
}

func (s *Server) showBroadcast(w http.ResponseWriter, r *http.Request, done, problem string) {
	start := time.Now()
	b, err := s.st.Broadcast(r.Context(), r.PathValue("name"))
	if errors.Is(err, store.ErrNotFound) {
		s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found", Error: "no broadcast " + r.PathValue("name")})
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	runs, err := s.st.BroadcastProgress(r.Context(), b.Name)
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
		Data: map[string]any{"B": b, "When": When(b.Broadcast), "Variants": labels, "After": after, "Runs": runsOf(runs), "Done": done}})
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
	case "pause":
		n, err = s.st.PauseBroadcast(r.Context(), name)
	case "resume":
		n, err = s.st.ResumeBroadcast(r.Context(), name, s.now())
	case "cancel":
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		if reason == "" {
			reason = "cancelled on the dashboard"
		}
		n, err = s.st.CancelBroadcast(r.Context(), name, reason)
	default:
		s.badRequest(w, r, fmt.Errorf("unknown action %q", action))
		return
	}
	switch {
	case errors.Is(err, store.ErrNotFound) && action == "resume":
		s.showBroadcast(w, r, "", "the broadcast is not paused")
	case errors.Is(err, store.ErrConflict):
		s.showBroadcast(w, r, "", err.Error())
	case err != nil:
		s.failed(w, r, err)
	default:
		what := map[string]string{"pause": "paused: %d queued emails wait", "resume": "resumed: %d emails released", "cancel": "cancelled: %d queued emails cancelled"}[action]
		s.showBroadcast(w, r, fmt.Sprintf(what, n), "")
	}
}

// When says when a broadcast runs, for people.
func When(b campaigns.Broadcast) string {
	switch {
	case b.SendAt != "":
		if _, local, err := campaigns.ParseSendAt(b.SendAt); err == nil && local {
			return b.SendAt + " in each contact's time zone"
		}
		return b.SendAt
	case b.Schedule != "":
		if _, local, err := campaigns.ParseSchedule(b.Schedule); err == nil && local {
			return "on the schedule " + b.Schedule + ", in each contact's time zone"
		}
		return "on the schedule " + b.Schedule
	}
	return "no time yet (a draft)"
}

// trendSVG draws a segment's daily sizes as a small line.
func trendSVG(days []store.SegmentSize) template.HTML {
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
