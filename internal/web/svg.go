package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"

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
	const w, h, left, bottom, top = 760.0, 260.0, 50.0, 30.0, 10.0
	var max int64 = 1
	for _, d := range days {
		max = max64(max, d.Sent, d.Opened, d.Clicked, d.Unsubscribed)
	}
	n := len(days)
	x := func(i int) float64 {
		if n <= 1 {
			return left
		}
		return left + (w-left-10)*float64(i)/float64(n-1)
	}
	y := func(v int64) float64 { return h - bottom - (h-bottom-top)*float64(v)/float64(max) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="emails per day" viewBox="0 0 %.0f %.0f" xmlns="http://www.w3.org/2000/svg">`, w, h)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, left, h-bottom, w-10, h-bottom)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" class="axis">%s</text><text x="%.0f" y="%.0f" text-anchor="end" class="axis">0</text>`, left-6, top+10, humanize.Comma(max), left-6, h-bottom)
	series := []struct {
		name, color string
		v           func(stats.EmailDay) int64
	}{
		{"sent", "#023047", func(d stats.EmailDay) int64 { return d.Sent }},
		{"opened", "#219ebc", func(d stats.EmailDay) int64 { return d.Opened }},
		{"clicked", "#fb8500", func(d stats.EmailDay) int64 { return d.Clicked }},
		{"unsubscribed", "#d62828", func(d stats.EmailDay) int64 { return d.Unsubscribed }},
	}
	for si, s := range series {
		var pts []string
		for i, d := range days {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(s.v(d))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`, s.color, strings.Join(pts, " "), s.name)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" class="axis">%s</text>`,
			left+10+float64(si)*130, h-12, s.color, left+24+float64(si)*130, h-3, s.name)
	}
	if n > 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="axis">%s</text>`, left, h-bottom+12, days[0].Day.Format("Jan 2"))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" class="axis">%s</text>`, w-10, h-bottom+12, days[n-1].Day.Format("Jan 2"))
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
