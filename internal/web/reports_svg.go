package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/report"
)

// The Reports page's charts. Each has a title and a description for
// screen readers, and the page shows its numbers in a table too.

// chartOpen starts an accessible chart: its title and a description.
func chartOpen(b *strings.Builder, id, title, desc string, w, h float64) {
	fmt.Fprintf(b, `<svg class="chart" id="%s" role="img" aria-labelledby="%s-title %s-desc" viewBox="0 0 %.0f %.0f" xmlns="http://www.w3.org/2000/svg">`,
		id, id, id, w, h)
	fmt.Fprintf(b, `<title id="%s-title">%s</title><desc id="%s-desc">%s</desc>`, id, html.EscapeString(title), id, html.EscapeString(desc))
}

// bar is one bar of a bar chart: its label, its value (nil: no data) and
// how the value is written.
type bar struct {
	Label string
	Value *float64
	Text  string
	Color string
}

// barsSVG draws horizontal bars from zero to each value, scaled to the
// largest; the description lists every bar.
func barsSVG(id, title string, bars []bar) template.HTML {
	const w, rowH, gap, left, right = 760.0, 26.0, 8.0, 190.0, 90.0
	top := 1e-12
	for _, x := range bars {
		if x.Value != nil {
			top = math.Max(top, *x.Value)
		}
	}
	h := math.Max(rowH+2*gap, float64(len(bars))*(rowH+gap)+gap)
	var desc []string
	for _, x := range bars {
		desc = append(desc, x.Label+": "+x.Text)
	}
	var b strings.Builder
	if len(bars) == 0 {
		desc = []string{"no data in this period"}
	}
	chartOpen(&b, id, title, strings.Join(desc, "; "), w, h)
	for i, x := range bars {
		y := gap + float64(i)*(rowH+gap)
		bw := 0.0
		if x.Value != nil {
			bw = math.Max(0, (w-left-right)*(*x.Value)/top)
		}
		color := x.Color
		if color == "" {
			color = stageColors[i%len(stageColors)]
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" class="label">%s</text>`, left-8, y+rowH/2+5, html.EscapeString(x.Label))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="%.0f" rx="3" fill="%s"><title>%s: %s</title></rect>`,
			left, y, bw, rowH, color, html.EscapeString(x.Label), html.EscapeString(x.Text))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="value" data-label="%s">%s</text>`, left+bw+6, y+rowH/2+5, html.EscapeString(x.Label), html.EscapeString(x.Text))
	}
	if len(bars) == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="label">no data in this period</text>`, left, gap+rowH/2+5)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// rateBarsSVG draws the rows' conversion rates.
func rateBarsSVG(id, title string, rows []report.Row) template.HTML {
	var bars []bar
	for _, r := range rows {
		bars = append(bars, bar{Label: r.Label, Value: r.Rates.Conversion, Text: pctText(r.Rates.Conversion)})
	}
	return barsSVG(id, title, bars)
}

// variantSVG draws an A/B test's variants on the metric it picks by.
func variantSVG(id string, t abTestView) template.HTML {
	var bars []bar
	for _, v := range t.Variants {
		label := v.Label
		color := "#8ecae6"
		if v.Winner {
			label += " (winner)"
			color = "#fb8500"
		}
		bars = append(bars, bar{Label: label, Value: v.Rate, Text: pctText(v.Rate), Color: color})
	}
	return barsSVG(id, fmt.Sprintf("%s, run %d: %s per variant", t.Broadcast, t.Run, t.Metric), bars)
}

// holdoutSVG draws, for each offer, the drawn and the holdout contacts'
// conversion rates as bars and the difference with its 95% interval as a
// point and whisker around zero.
func holdoutSVG(hs []report.Holdout) template.HTML {
	const w, groupH, rowH, left, mid, right = 760.0, 78.0, 22.0, 150.0, 430.0, 20.0
	h := math.Max(groupH, float64(len(hs))*groupH) + 30
	top := 1e-12
	span := 1e-12 // the widest |difference| or interval end
	for _, x := range hs {
		for _, p := range []*float64{x.Treatment.Rate(), x.Control.Rate()} {
			if p != nil {
				top = math.Max(top, *p)
			}
		}
		if x.Rate != nil {
			span = math.Max(span, math.Max(math.Abs(x.Rate.Low), math.Abs(x.Rate.High)))
		}
	}
	var desc []string
	for _, x := range hs {
		d := fmt.Sprintf("%s: drawn %s, holdout %s", x.Offer, pctText(x.Treatment.Rate()), pctText(x.Control.Rate()))
		if x.Rate != nil {
			d += fmt.Sprintf(", difference %+.1f points (95%% CI %.1f to %.1f)", x.Rate.Diff*100, x.Rate.Low*100, x.Rate.High*100)
		}
		desc = append(desc, d)
	}
	if len(hs) == 0 {
		desc = []string{"no offer draws in this period"}
	}
	var b strings.Builder
	chartOpen(&b, "holdout-chart", "Offers: drawn vs holdout conversion rate", strings.Join(desc, "; "), w, h)
	barW := mid - left - 70
	zero := mid + (w-right-mid)/2
	half := (w - right - mid) / 2 * 0.9
	fmt.Fprintf(&b, `<line x1="%.1f" y1="4" x2="%.1f" y2="%.0f" stroke="#999" stroke-dasharray="3 3"/>`, zero, zero, h-26)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" class="axis">difference, points (0 = no effect)</text>`, zero, h-8)
	for i, x := range hs {
		y := 6 + float64(i)*groupH
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="label" font-weight="600">%s</text>`, 4.0, y+14, html.EscapeString(x.Offer))
		for j, g := range []struct {
			name  string
			rate  *float64
			color string
		}{{"drawn", x.Treatment.Rate(), "#fb8500"}, {"holdout", x.Control.Rate(), "#219ebc"}} {
			gy := y + 20 + float64(j)*(rowH+4)
			bw := 0.0
			if g.rate != nil {
				bw = barW * *g.rate / top
			}
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" class="label">%s</text>`, left-6, gy+rowH/2+5, g.name)
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="%.0f" fill="%s"><title>%s, %s: %s</title></rect>`,
				left, gy, bw, rowH, g.color, html.EscapeString(x.Offer), g.name, pctText(g.rate))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="value" data-offer="%s" data-group="%s">%s</text>`,
				left+bw+6, gy+rowH/2+5, html.EscapeString(x.Offer), g.name, pctText(g.rate))
		}
		if x.Rate == nil {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" class="axis">too few to compare</text>`, zero, y+44)
			continue
		}
		px := func(v float64) float64 { return zero + half*v/span }
		cy := y + 44
		color := "#5b6b7a"
		if x.Rate.Significant() {
			color = "#1a7f37"
			if x.Rate.Diff < 0 {
				color = "#b00020"
			}
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"><title>95%% CI %.1f to %.1f points</title></line>`,
			px(x.Rate.Low), cy, px(x.Rate.High), cy, color, x.Rate.Low*100, x.Rate.High*100)
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="6" fill="%s"/>`, px(x.Rate.Diff), cy, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" class="value" data-offer="%s" data-group="difference">%+.1f points</text>`,
			px(x.Rate.Diff), cy-12, html.EscapeString(x.Offer), x.Rate.Diff*100)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// revenueSVG draws the revenue per day: all conversions', and those
// credited to an email.
func revenueSVG(days []report.Day) template.HTML {
	var at []time.Time
	all := lineSeries{name: "all revenue", color: "#023047"}
	credited := lineSeries{name: "credited to an email", color: "#fb8500"}
	var sumAll, sumCredited float64
	for _, d := range days {
		at = append(at, d.Day)
		all.values = append(all.values, d.Revenue)
		credited.values = append(credited.values, d.AttributedRevenue)
		sumAll += d.Revenue
		sumCredited += d.AttributedRevenue
	}
	desc := fmt.Sprintf("%d days: revenue %.2f in all, %.2f of it credited to an email", len(days), sumAll, sumCredited)
	return linesSVG(func(b *strings.Builder, w, h float64) {
		chartOpen(b, "revenue-chart", "Revenue per day", desc, w, h)
	}, at, []lineSeries{all, credited}, 70, 200, func(v float64) string { return fmt.Sprintf("%.2f", v) })
}
