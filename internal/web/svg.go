package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/stats"
)

// Charts are SVG drawn here, so pages need no script to show them.

var stageColors = []string{"#8ecae6", "#219ebc", "#126782", "#023047", "#fb8500"}

// funnelSVG draws contacts per stage as a centred funnel.
func funnelSVG(stages []stageCount) template.HTML {
	const w, rowH, gap = 640.0, 44.0, 6.0
	var max int64 = 1
	for _, s := range stages {
		if s.N > max {
			max = s.N
		}
	}
	h := float64(len(stages))*(rowH+gap) + gap
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="contacts per stage" viewBox="0 0 %.0f %.0f" xmlns="http://www.w3.org/2000/svg">`, w, h)
	for i, s := range stages {
		bw := math.Max(2, (w-200)*float64(s.N)/float64(max))
		x := 140 + (w-200-bw)/2
		y := gap + float64(i)*(rowH+gap)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.0f" rx="4" fill="%s"><title>%s: %s</title></rect>`,
			x, y, bw, rowH, stageColors[i%len(stageColors)], html.EscapeString(s.Stage), humanize.Comma(s.N))
		fmt.Fprintf(&b, `<text x="130" y="%.1f" text-anchor="end" class="label">%s</text>`, y+rowH/2+5, html.EscapeString(s.Stage))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="value" data-stage="%s">%s</text>`, w-50, y+rowH/2+5, html.EscapeString(s.Stage), humanize.Comma(s.N))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// flowSVG draws the stages as boxes in journey order and the moves
// between them as arcs whose width follows their count: forward moves
// above, moves back (regressions) below in red.
func flowSVG(stages []stageCount, flows []stats.Flow) template.HTML {
	const w, h, boxW, boxH = 760.0, 300.0, 120.0, 40.0
	mid := h / 2
	step := (w - boxW) / float64(len(stages)-1)
	cx := func(stage string) float64 { return boxW/2 + float64(stageIdx(stage))*step }
	var max int64 = 1
	for _, f := range flows {
		if f.N > max {
			max = f.N
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="moves between stages" viewBox="0 0 %.0f %.0f" xmlns="http://www.w3.org/2000/svg">`, w, h)
	for _, f := range flows {
		if stageIdx(f.From) >= len(stages) || stageIdx(f.To) >= len(stages) {
			continue
		}
		x1, x2 := cx(f.From), cx(f.To)
		back := stageIdx(f.To) < stageIdx(f.From)
		sw := 1.5 + 14*float64(f.N)/float64(max)
		dist := math.Abs(x2 - x1)
		lift := 30 + dist*0.25
		y := mid - boxH/2
		cy := y - lift
		color := "#219ebc"
		if back {
			y = mid + boxH/2
			cy = y + lift
			color = "#d62828"
		}
		fmt.Fprintf(&b, `<path d="M %.1f %.1f Q %.1f %.1f %.1f %.1f" fill="none" stroke="%s" stroke-opacity="0.6" stroke-width="%.1f"><title>%s → %s: %s</title></path>`,
			x1, y, (x1+x2)/2, cy, x2, y, color, sw, f.From, f.To, humanize.Comma(f.N))
		ly := (y + cy) / 2
		if back {
			ly += 10
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" class="flow" data-from="%s" data-to="%s">%s</text>`,
			(x1+x2)/2, ly, f.From, f.To, humanize.Comma(f.N))
	}
	for i, s := range stages {
		x := cx(s.Stage) - boxW/2
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.0f" rx="6" fill="%s"/>`, x, mid-boxH/2, boxW, boxH, stageColors[i%len(stageColors)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" class="box">%s</text>`, x+boxW/2, mid+5, html.EscapeString(s.Stage))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// emailSVG draws emails sent, opened, clicked and unsubscribed per day as
// lines.
func emailSVG(days []stats.EmailDay) template.HTML {
	var at []time.Time
	series := []lineSeries{{name: "sent", color: "#023047"}, {name: "opened", color: "#219ebc"},
		{name: "clicked", color: "#fb8500"}, {name: "unsubscribed", color: "#d62828"}}
	for _, d := range days {
		at = append(at, d.Day)
		for i, v := range []int64{d.Sent, d.Opened, d.Clicked, d.Unsubscribed} {
			series[i].values = append(series[i].values, float64(v))
		}
	}
	return linesSVG(func(b *strings.Builder, w, h float64) {
		fmt.Fprintf(b, `<svg class="chart" role="img" aria-label="emails per day" viewBox="0 0 %.0f %.0f" xmlns="http://www.w3.org/2000/svg">`, w, h)
	}, at, series, 50, 130, func(v float64) string { return humanize.Comma(int64(v)) })
}

// lineSeries is one line of a chart of days: its name, colour and a
// value a day.
type lineSeries struct {
	name, color string
	values      []float64
}

// linesSVG draws series over days as lines from zero to the largest
// value (written by label at the top of the axis), with a legend; open
// starts the chart.
func linesSVG(open func(b *strings.Builder, w, h float64), days []time.Time, series []lineSeries, left, legendStep float64, label func(float64) string) template.HTML {
	const w, h, bottom, top = 760.0, 260.0, 30.0, 10.0
	most := 1.0
	for _, s := range series {
		for _, v := range s.values {
			most = math.Max(most, v)
		}
	}
	n := len(days)
	x := func(i int) float64 {
		if n <= 1 {
			return left
		}
		return left + (w-left-10)*float64(i)/float64(n-1)
	}
	y := func(v float64) float64 { return h - bottom - (h-bottom-top)*v/most }
	var b strings.Builder
	open(&b, w, h)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, left, h-bottom, w-10, h-bottom)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" class="axis">%s</text><text x="%.0f" y="%.0f" text-anchor="end" class="axis">0</text>`, left-6, top+10, label(most), left-6, h-bottom)
	for si, s := range series {
		var pts []string
		for i, v := range s.values {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`, s.color, strings.Join(pts, " "), s.name)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" class="axis">%s</text>`,
			left+10+float64(si)*legendStep, h-12, s.color, left+24+float64(si)*legendStep, h-3, s.name)
	}
	if n > 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="axis">%s</text>`, left, h-bottom+12, days[0].Format("Jan 2"))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" class="axis">%s</text>`, w-10, h-bottom+12, days[n-1].Format("Jan 2"))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func max64(m int64, vs ...int64) int64 {
	for _, v := range vs {
		if v > m {
			m = v
		}
	}
	return m
}
