package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/store"
)

// RefreshReports brings the reports up to date: what `waymark report`
// runs first and what the dashboard's refresher runs every 30 seconds.
// The goal events stored since attribution's last pass are credited to
// emails first, so that the rollups count them.
func RefreshReports(ctx context.Context, st *store.Store, now time.Time, full bool) error {
	if _, err := st.AttributeConversions(ctx, now); err != nil {
		return err
	}
	return st.RefreshReports(ctx, now, full)
}

// ReportRequest is what `waymark report` asks for, as written on its
// command line (From and To YYYY-MM-DD, To not included; By a
// dimension's name), and the clock's now.
type ReportRequest struct {
	From, To, By string
	JSON         bool
	Now          time.Time
}

// reportJSON is `waymark report --json`'s answer: the API's report, and
// by offer the offers' holdouts.
type reportJSON struct {
	report.Table
	Holdouts []report.Holdout `json:"holdouts,omitempty"`
}

// Report refreshes the reports, then writes the one req asks for to w: an
// aligned table, or JSON. A bad request is a *report.ParamError.
func Report(ctx context.Context, st *store.Store, req ReportRequest, w io.Writer) error {
	p, err := report.ParsePeriod(req.From, req.To, req.Now)
	if err != nil {
		return err
	}
	by := report.ByTemplate
	if req.By != "" {
		if by, err = report.ParseDimension(req.By); err != nil {
			return &report.ParamError{Param: "by", Msg: err.Error()}
		}
	}
	if err := RefreshReports(ctx, st, req.Now, false); err != nil {
		return err
	}
	t, err := st.Report(ctx, by, p)
	if err != nil {
		return err
	}
	var holdouts []report.Holdout
	if by == report.ByOffer {
		if holdouts, err = st.Holdouts(ctx, p); err != nil {
			return err
		}
	}
	if req.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reportJSON{Table: t, Holdouts: holdouts})
	}
	if err := writeReportTable(w, t, p); err != nil {
		return err
	}
	if by == report.ByOffer {
		return writeHoldouts(w, holdouts)
	}
	return nil
}

// writeReportTable writes a report as an aligned table: counts, and the
// share of the emails sent in brackets.
func writeReportTable(w io.Writer, t report.Table, p report.Period) error {
	fmt.Fprintf(w, "Emails sent %s, by %s\n\n", p, t.By)
	if len(t.Rows) == 0 {
		fmt.Fprintln(w, "No emails in the period.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tsent\tdelivered\tbounced hard\tsoft\tcomplaints\topened\tclicked\tunsubscribed\tconverted\tconversions\trevenue\tper recipient\t\n", t.By)
	for _, r := range append(t.Rows, t.Total) {
		f, rt := r.Figures, r.Rates
		share := func(n int64, v *float64) string { return humanize.Comma(n) + " (" + report.Percent(v) + ")" }
		per := "–"
		if rt.RevenuePerEmail != nil {
			per = report.Money(*rt.RevenuePerEmail)
		}
		label := r.Label
		if label == "" {
			label = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", label, humanize.Comma(f.Sent),
			share(f.Delivered, rt.DeliveredReported), humanize.Comma(f.HardBounced), humanize.Comma(f.SoftBounced),
			share(f.Complained, rt.Complaint), share(f.Opened, rt.Open), share(f.Clicked, rt.Click),
			share(f.Unsubscribed, rt.Unsubscribe), share(f.Converted, rt.Conversion), humanize.Comma(f.Conversions),
			report.Money(f.Revenue), per)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !t.RefreshedAt.IsZero() {
		fmt.Fprintf(w, "\nRefreshed %s.\n", t.RefreshedAt.UTC().Format("2006-01-02 15:04 UTC"))
	}
	return nil
}

// writeHoldouts writes each offer's drawn contacts against its holdout.
func writeHoldouts(w io.Writer, hs []report.Holdout) error {
	fmt.Fprintf(w, "\nOffers: drawn against held out (draws in the period; goal events within %d days of the draw)\n\n", int(report.HoldoutHorizon.Hours()/24))
	if len(hs) == 0 {
		fmt.Fprintln(w, "No offer draws in the period.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "offer\tgroup\tcontacts\tconverted\trevenue\tper contact\t")
	for _, h := range hs {
		for i, g := range []report.Group{h.Treatment, h.Control} {
			name := h.Offer
			if i > 0 {
				name = ""
			}
			per := "–"
			if v := g.PerContact(); v != nil {
				per = report.Money(*v)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%s\t%s\t\n", name, g.Name, humanize.Comma(g.N), humanize.Comma(g.Converted), report.Percent(g.Rate()),
				report.Money(g.Revenue), per)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, h := range hs {
		rate, revenue := h.Words()
		fmt.Fprintf(w, "%s, drawn against held out: %s; revenue: %s\n", h.Offer, rate, revenue)
	}
	return nil
}
