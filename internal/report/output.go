package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParamError is a bad report parameter: which one (from, to, by) and what
// is wrong with it.
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Msg }

// DateLayout is how report periods' days are written.
const DateLayout = "2006-01-02"

// DefaultDays is the length of the period when none is given: the last
// 30 days, today included.
const DefaultDays = 30

// MaxDays is the longest period a report reads.
const MaxDays = 3 * 366

// ParsePeriod reads a period from its first day and the day after its
// last (to is not included, as in the API's other figures), both
// YYYY-MM-DD in UTC: without to, tomorrow (today is included); without
// from, DefaultDays days before to.
func ParsePeriod(from, to string, today time.Time) (Period, error) {
	day := func(param, s string) (time.Time, error) {
		d, err := time.Parse(DateLayout, strings.TrimSpace(s))
		if err != nil {
			return time.Time{}, &ParamError{param, fmt.Sprintf("%q is not a day: write it YYYY-MM-DD", s)}
		}
		return d, nil
	}
	end := today.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	if to != "" {
		d, err := day("to", to)
		if err != nil {
			return Period{}, err
		}
		end = d
	}
	start := end.AddDate(0, 0, -DefaultDays)
	if from != "" {
		d, err := day("from", from)
		if err != nil {
			return Period{}, err
		}
		start = d
	}
	switch {
	case !start.Before(end):
		return Period{}, &ParamError{"from", fmt.Sprintf("%s must be before to, %s (the first day not included)", start.Format(DateLayout), end.Format(DateLayout))}
	case end.Sub(start) > MaxDays*24*time.Hour:
		return Period{}, &ParamError{"from", fmt.Sprintf("a period spans at most %d days", MaxDays)}
	}
	return Period{From: start, To: end}, nil
}

// String writes the period as its first and last days.
func (p Period) String() string {
	return p.From.Format(DateLayout) + " to " + p.To.AddDate(0, 0, -1).Format(DateLayout) + " (UTC)"
}

// csvHeader are the columns of a report as CSV.
var csvHeader = []string{"key", "label", "sent", "delivered", "hard_bounced", "soft_bounced", "complained", "opened", "clicked",
	"unsubscribed", "converted", "conversions", "revenue", "open_rate", "click_rate", "unsubscribe_rate", "bounce_rate",
	"complaint_rate", "conversion_rate", "revenue_per_recipient"}

// WriteCSV writes the report as CSV: a header, its rows, then the total
// (key "total"). Rates are fractions (empty when nothing was sent),
// revenue has two decimals; a cell a spreadsheet would take for a formula
// is quoted with a leading apostrophe.
func WriteCSV(w io.Writer, t Table) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, r := range append(t.Rows, t.Total) {
		f := r.Figures
		rec := []string{cell(r.Key), cell(r.Label)}
		for _, n := range []int64{f.Sent, f.Delivered, f.HardBounced, f.SoftBounced, f.Complained, f.Opened, f.Clicked, f.Unsubscribed, f.Converted, f.Conversions} {
			rec = append(rec, strconv.FormatInt(n, 10))
		}
		rec = append(rec, strconv.FormatFloat(f.Revenue, 'f', 2, 64))
		rt := r.Rates
		for _, v := range []*float64{rt.Open, rt.Click, rt.Unsubscribe, rt.Bounce, rt.Complaint, rt.Conversion} {
			rec = append(rec, fraction(v))
		}
		per := ""
		if rt.RevenuePerEmail != nil {
			per = strconv.FormatFloat(*rt.RevenuePerEmail, 'f', 2, 64)
		}
		if err := cw.Write(append(rec, per)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// cell guards a text cell against spreadsheet formulas.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func fraction(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', 4, 64)
}

// Percent writes a rate as a percentage with one decimal ("–" for none).
func Percent(v *float64) string {
	if v == nil {
		return "–"
	}
	return strconv.FormatFloat(*v*100, 'f', 1, 64) + "%"
}

// Money writes an amount with two decimals.
func Money(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// DiffWords says a difference in words: "drawn contacts converted 4.1
// points more (95% CI 1.2 to 7.0)", "no significant difference (95% CI
// -1.0 to 3.0 points)", or that the groups are too small to tell. scale
// turns the difference into its unit (100: shares into points).
func DiffWords(who string, i *Interval, scale float64, unit, more, less string) string {
	if i == nil {
		return NothingToCompare
	}
	num := strings.TrimSuffix(unit, " points")
	ci := fmt.Sprintf("95%% CI "+num+" to "+num, i.Low*scale, i.High*scale)
	if !i.Significant() {
		return "no significant difference (" + ci + ")"
	}
	word := more
	if i.Diff < 0 {
		word = less
	}
	return fmt.Sprintf("%s "+unit+" %s (%s)", who, math.Abs(i.Diff*scale), word, ci)
}

// Words says the holdout's two differences, conversion rate and revenue
// per contact, as the reports say them (DiffWords).
func (h Holdout) Words() (rate, revenue string) {
	return DiffWords("drawn contacts converted", h.Rate, 100, "%.1f points", "more", "less"),
		DiffWords("drawn contacts spent", h.Revenue, 1, "%.2f", "more per contact", "less per contact")
}
