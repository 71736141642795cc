package web

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/report"
)

// The dashboard's reports (issue 21): what marketing earned over a
// period, by a dimension, sortable and downloadable as CSV; the offers'
// holdout comparisons, the A/B tests, the stages' economics and the
// revenue per day, with charts.
func (s *Server) routesReportPages() {
	s.mux.Handle("GET /dashboard/reports", s.dash(s.reportsPage))
	s.mux.Handle("GET /dashboard/reports.csv", s.dash(s.reportsCSV))
}

// reportColumn is one column of the report table: its name (the sort
// parameter's value and the CSV's header), its heading, and its value.
type reportColumn struct {
	Name    string
	Heading string
	Rate    bool                      // a share, shown as a percentage
	Money   bool                      // revenue, shown with two decimals
	count   func(report.Row) int64    // counts
	value   func(report.Row) *float64 // rates and money (nil: no emails)
}

// Cell is the column's value in row, as the page shows it.
func (c reportColumn) Cell(row report.Row) string {
	switch {
	case c.count != nil:
		return humanize.Comma(c.count(row))
	case c.Rate:
		return pctText(c.value(row))
	default:
		return moneyText(c.value(row))
	}
}

// sortKey orders rows by the column (nil values first).
func (c reportColumn) sortKey(a, b report.Row) int {
	if c.count != nil {
		return cmp.Compare(c.count(a), c.count(b))
	}
	x, y := c.value(a), c.value(b)
	switch {
	case x == nil && y == nil:
		return 0
	case x == nil:
		return -1
	case y == nil:
		return 1
	}
	return cmp.Compare(*x, *y)
}

func money(f func(report.Row) float64) func(report.Row) *float64 {
	return func(r report.Row) *float64 { v := f(r); return &v }
}

// reportColumns are the report table's columns after its first (the
// dimension's value, sort name "key").
var reportColumns = []reportColumn{
	{Name: "sent", Heading: "sent", count: func(r report.Row) int64 { return r.Sent }},
	{Name: "delivered", Heading: "de\u00adliv\u00adered", count: func(r report.Row) int64 { return r.Delivered }},
	{Name: "hard_bounced", Heading: "hard bounces", count: func(r report.Row) int64 { return r.HardBounced }},
	{Name: "soft_bounced", Heading: "soft bounces", count: func(r report.Row) int64 { return r.SoftBounced }},
	{Name: "complained", Heading: "com\u00adplaints", count: func(r report.Row) int64 { return r.Complained }},
	{Name: "opened", Heading: "opened (people)", count: func(r report.Row) int64 { return r.Opened }},
	{Name: "open_rate", Heading: "open rate", Rate: true, value: func(r report.Row) *float64 { return r.Rates.Open }},
	{Name: "clicked", Heading: "clicked (people)", count: func(r report.Row) int64 { return r.Clicked }},
	{Name: "click_rate", Heading: "click rate", Rate: true, value: func(r report.Row) *float64 { return r.Rates.Click }},
	{Name: "unsubscribed", Heading: "unsub\u00adscribes", count: func(r report.Row) int64 { return r.Unsubscribed }},
	{Name: "conversions", Heading: "con\u00adver\u00adsions", count: func(r report.Row) int64 { return r.Conversions }},
	{Name: "conversion_rate", Heading: "con\u00adver\u00adsion rate", Rate: true, value: func(r report.Row) *float64 { return r.Rates.Conversion }},
	{Name: "revenue", Heading: "revenue", Money: true, value: money(func(r report.Row) float64 { return r.Revenue })},
	{Name: "revenue_per_recipient", Heading: "rev\u00adenue per re\u00adcip\u00adi\u00adent", Money: true, value: func(r report.Row) *float64 { return r.Rates.RevenuePerEmail }},
}

// reportQuery is what the Reports page shows: the period, the dimension,
// and the column the rows are sorted by ("" : as the store lists them).
type reportQuery struct {
	Period report.Period
	By     report.Dimension
	Sort   string
	Desc   bool
}

// values are the query's parameters, with sort changed to sortBy (""
// keeps it); asking again for the column sorted by flips its direction.
func (q reportQuery) values(sortBy string) url.Values {
	v := url.Values{"from": {day(q.Period.From)}, "to": {day(q.Period.To)}, "by": {string(q.By)}}
	sort, desc := q.Sort, q.Desc
	if sortBy != "" {
		// A column sorted first by its largest figures (the key: A to Z);
		// its link flips the direction.
		desc = sortBy != "key"
		if sortBy == q.Sort {
			desc = !q.Desc
		}
		sort = sortBy
	}
	if sort != "" {
		if desc {
			sort = "-" + sort
		}
		v.Set("sort", sort)
	}
	return v
}

// readReportQuery reads ?from=&to=&by=&sort= (sort: a column's name,
// "-name" for descending); the error names the parameter.
func (s *Server) readReportQuery(r *http.Request) (reportQuery, error) {
	p, err := s.reportDays(r)
	if err != nil {
		return reportQuery{}, err
	}
	q := reportQuery{Period: p, By: report.ByTemplate}
	if v := r.URL.Query().Get("by"); v != "" {
		if q.By, err = report.ParseDimension(v); err != nil {
			return reportQuery{}, fmt.Errorf("by: %w", err)
		}
	}
	if v := strings.TrimSpace(r.URL.Query().Get("sort")); v != "" {
		name := strings.TrimPrefix(v, "-")
		q.Sort, q.Desc = name, strings.HasPrefix(v, "-")
		if name != "key" && columnNamed(name) == nil {
			names := []string{"key"}
			for _, c := range reportColumns {
				names = append(names, c.Name)
			}
			return reportQuery{}, fmt.Errorf("sort: unknown column %q: use one of %s (with - before it for largest first)", v, strings.Join(names, ", "))
		}
	}
	return q, nil
}

func columnNamed(name string) *reportColumn {
	for i := range reportColumns {
		if reportColumns[i].Name == name {
			return &reportColumns[i]
		}
	}
	return nil
}

// sortRows sorts the table's rows as q says (ties keep the store's
// order). By key is the store's order (steps and variants in order),
// or its reverse.
func sortRows(rows []report.Row, q reportQuery) {
	c := columnNamed(q.Sort)
	switch {
	case q.Sort == "key" && q.Desc:
		slices.Reverse(rows)
	case c != nil:
		slices.SortStableFunc(rows, func(a, b report.Row) int {
			if q.Desc {
				return c.sortKey(b, a)
			}
			return c.sortKey(a, b)
		})
	}
}

// sortedReport reads the report q asks for, its rows sorted.
func (s *Server) sortedReport(ctx context.Context, q reportQuery) (report.Table, error) {
	t, err := s.st.Report(ctx, q.By, q.Period)
	if err != nil {
		return t, err
	}
	sortRows(t.Rows, q)
	return t, nil
}

// reportHeading is a sortable column heading: its link and whether (and
// how) the table is sorted by it.
type reportHeading struct {
	Name, Heading, Link string
	Sorted              string // "", "ascending" or "descending" (aria-sort)
	Num                 bool
}

func reportHeadings(q reportQuery) []reportHeading {
	hs := []reportHeading{{Name: "key", Heading: string(q.By)}}
	for _, c := range reportColumns {
		hs = append(hs, reportHeading{Name: c.Name, Heading: c.Heading, Num: true})
	}
	for i := range hs {
		hs[i].Link = "?" + q.values(hs[i].Name).Encode()
		if hs[i].Name == q.Sort {
			hs[i].Sorted = "ascending"
			if q.Desc {
				hs[i].Sorted = "descending"
			}
		}
	}
	return hs
}

func (s *Server) reportsPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q, err := s.readReportQuery(r)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	data, err := s.reportsData(r.Context(), q)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "reports", view{Title: "Reports", Nav: "reports", Took: time.Since(start).Round(time.Microsecond).String(), Data: data})
}

// reportsData is what the Reports page shows for q.
func (s *Server) reportsData(ctx context.Context, q reportQuery) (map[string]any, error) {
	var (
		t, tones, stages report.Table
		holdouts         []report.Holdout
		tests            []report.ABTest
		econ             []report.Stage
		stored           []report.Day
		err              error
	)
	for _, read := range []func(){
		func() { t, err = s.sortedReport(ctx, q) },
		func() { tones, err = s.st.Report(ctx, report.ByTone, q.Period) },
		func() { stages, err = s.st.Report(ctx, report.ByStage, q.Period) },
		func() { holdouts, err = s.st.Holdouts(ctx, q.Period) },
		func() { tests, err = s.st.ABTests(ctx, q.Period) },
		func() { econ, err = s.st.Stages(ctx, q.Period) },
		func() { stored, err = s.st.Days(ctx, q.Period) },
	} {
		if read(); err != nil {
			return nil, err
		}
	}
	days, dayTotal := everyDay(stored, q.Period)
	var holdoutViews []holdoutView
	for _, h := range holdouts {
		holdoutViews = append(holdoutViews, newHoldoutView(h))
	}
	var testViews []abTestView
	for i, a := range tests {
		v := newABTestView(a)
		v.Chart = variantSVG(fmt.Sprintf("variant-chart-%d", i+1), v)
		testViews = append(testViews, v)
	}
	dims := make([]string, len(report.Dimensions))
	for i, d := range report.Dimensions {
		dims[i] = string(d)
	}
	return map[string]any{
		"Q": q, "From": day(q.Period.From), "To": day(q.Period.To), "By": string(q.By), "Dimensions": dims,
		"T": t, "Headings": reportHeadings(q), "Columns": reportColumns, "CSV": "/dashboard/reports.csv?" + q.values("").Encode(),
		"Tones": tones.Rows, "ToneChart": rateBarsSVG("tone-chart", "Conversion rate by tone", tones.Rows),
		"StageRows": stages.Rows, "StageChart": rateBarsSVG("stage-chart", "Conversion rate by stage at send time", stages.Rows),
		"Holdouts": holdoutViews, "HoldoutChart": holdoutSVG(holdouts),
		"Tests": testViews, "Econ": econ,
		"Days": days, "DayTotal": dayTotal, "DayChart": revenueSVG(days),
	}, nil
}

// reportsCSV is the Reports page's table as CSV (report.WriteCSV, as the
// API writes it): the same rows, in the same order, and the total.
func (s *Server) reportsCSV(w http.ResponseWriter, r *http.Request) {
	q, err := s.readReportQuery(r)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	t, err := s.sortedReport(r.Context(), q)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="waymark-report-by-%s-%s-%s.csv"`, q.By, day(q.Period.From), day(q.Period.To.AddDate(0, 0, -1))))
	if err := report.WriteCSV(w, t); err != nil {
		s.log.Warn("writing a report as CSV", "err", err)
	}
}

// everyDay is the period's days, zero or not, and their total.
func everyDay(stored []report.Day, p report.Period) ([]report.Day, report.Day) {
	by := map[string]report.Day{}
	for _, d := range stored {
		by[day(d.Day.UTC())] = d
	}
	var out []report.Day
	var total report.Day
	for d := p.From; d.Before(p.To); d = d.AddDate(0, 0, 1) {
		x := by[day(d)]
		x.Day = d
		out = append(out, x)
		total.Conversions += x.Conversions
		total.Revenue += x.Revenue
		total.Attributed += x.Attributed
		total.AttributedRevenue += x.AttributedRevenue
	}
	return out, total
}

// holdoutView is an offer's holdout comparison as the page says it.
type holdoutView struct {
	report.Holdout
	RateWords, RevenueWords string
}

func newHoldoutView(h report.Holdout) holdoutView {
	v := holdoutView{Holdout: h}
	v.RateWords, v.RevenueWords = h.Words()
	return v
}

// abTestView is a broadcast run's A/B test as the page shows it.
type abTestView struct {
	report.ABTest
	Variants    []abVariantView
	Metric      string // what the test picks by: "click rate"
	MarginWords string
	Chart       template.HTML
}

type abVariantView struct {
	report.Variant
	Number int      // from 1
	Rate   *float64 // the PickBy metric over sent
	Winner bool
}

// metricNames name what a test picks by, as a rate.
var metricNames = map[string]string{campaigns.PickOpens: "open rate", campaigns.PickClicks: "click rate", campaigns.PickConversions: "conversion rate"}

func newABTestView(a report.ABTest) abTestView {
	v := abTestView{ABTest: a, Metric: metricNames[a.PickBy]}
	if v.Metric == "" {
		v.Metric = a.PickBy + " rate"
	}
	for _, x := range a.Variants {
		v.Variants = append(v.Variants, abVariantView{Variant: x, Number: x.Index + 1, Rate: a.Rate(x), Winner: a.Decided && x.Index == a.Winner})
	}
	if a.Margin != nil {
		v.MarginWords = report.DiffWords("the winner's "+v.Metric+" is", a.Margin.Rate, 100, "%.1f points", "above the runner-up's", "below the runner-up's")
	}
	return v
}

func moneyText(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f", *p)
}

func durationText(d *time.Duration) string {
	if d == nil {
		return "–"
	}
	h := d.Hours()
	return hoursText(&h)
}

// ownFigures are a page's own lines of a report (a sequence's steps, a
// broadcast's variants), their total, and the Reports page that shows
// them among the others.
type ownFigures struct {
	ID      string // the table's
	Heading string // its first column's
	Rows    []report.Row
	Total   report.Row
	Link    string
	From    string
	To      string
}

// ownReport reads the report by by over p and keeps the rows keep says
// (all of them with keep nil).
func (s *Server) ownReport(ctx context.Context, id, heading string, by report.Dimension, p report.Period, keep func(report.Row) bool) (ownFigures, error) {
	t, err := s.st.Report(ctx, by, p)
	if err != nil {
		return ownFigures{}, err
	}
	q := reportQuery{Period: p, By: by}
	o := ownFigures{ID: id, Heading: heading, Link: "/dashboard/reports?" + q.values("").Encode(), From: day(p.From), To: day(p.To)}
	for _, r := range t.Rows {
		if keep == nil || keep(r) {
			o.Rows = append(o.Rows, r)
			o.Total.Figures.Add(r.Figures)
		}
	}
	o.Total.Key, o.Total.Label, o.Total.Rates = "total", "total", o.Total.Figures.Rates()
	return o, nil
}

// reportDays is ?from=&to= (default the last 30 days, today included;
// to not included) as a report's period; the error names the parameter.
func (s *Server) reportDays(r *http.Request) (report.Period, error) {
	q := r.URL.Query()
	return report.ParsePeriod(q.Get("from"), q.Get("to"), s.now())
}
