package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/waymark/waymark/internal/report"
)

// The reports (issue 21) under /api/v1/reports: what emails did and
// earned, from the rollups the refresher keeps up to date.

func (s *Server) routesReports() {
	h := func(pattern string, fn http.HandlerFunc) { s.mux.Handle(pattern, s.api(fn)) }
	h("GET /api/v1/reports", s.apiReport)
	h("GET /api/v1/reports/holdouts", reportsAPI(s, s.st.Holdouts))
	h("GET /api/v1/reports/abtests", reportsAPI(s, s.st.ABTests))
	h("GET /api/v1/reports/stages", reportsAPI(s, s.st.Stages))
	h("GET /api/v1/reports/days", reportsAPI(s, s.st.Days))
}

// reportPeriod reads ?from=&to= (YYYY-MM-DD; to not included; by default
// the last 30 days, today included); on a bad one it answers 400 naming
// it and returns false.
func (s *Server) reportPeriod(w http.ResponseWriter, r *http.Request) (report.Period, bool) {
	q := r.URL.Query()
	p, err := report.ParsePeriod(q.Get("from"), q.Get("to"), s.now())
	var pe *report.ParamError
	if errors.As(err, &pe) {
		fieldError(w, http.StatusBadRequest, pe.Param, "%s", pe.Error())
		return p, false
	}
	return p, err == nil
}

// reportsAPI answers a report over ?from=&to= as JSON {"from", "to",
// "items"}.
func reportsAPI[T any](s *Server, read func(ctx context.Context, p report.Period) ([]T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.reportPeriod(w, r)
		if !ok {
			return
		}
		items, err := read(r.Context(), p)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if items == nil {
			items = []T{}
		}
		writeJSON(w, http.StatusOK, struct {
			From  string `json:"from"`
			To    string `json:"to"`
			Items []T    `json:"items"`
		}{p.From.Format(report.DateLayout), p.To.Format(report.DateLayout), items})
	}
}

// apiReport answers ?by=&from=&to=&format=: the figures of the emails
// sent in the period grouped by the dimension, as JSON or (format=csv)
// CSV.
func (s *Server) apiReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	by := report.ByTemplate
	if v := q.Get("by"); v != "" {
		d, err := report.ParseDimension(v)
		if err != nil {
			fieldError(w, http.StatusBadRequest, "by", "by: %v", err)
			return
		}
		by = d
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		fieldError(w, http.StatusBadRequest, "format", "format: %q is not json or csv", format)
		return
	}
	p, ok := s.reportPeriod(w, r)
	if !ok {
		return
	}
	t, err := s.st.Report(r.Context(), by, p)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if format != "csv" {
		writeJSON(w, http.StatusOK, t)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="waymark-report-by-%s-%s-%s.csv"`, by,
		p.From.Format(report.DateLayout), p.To.AddDate(0, 0, -1).Format(report.DateLayout)))
	if err := report.WriteCSV(w, t); err != nil {
		s.log.Warn("writing a report as CSV", "err", err)
	}
}
