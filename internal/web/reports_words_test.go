package web_test

import (
	"strings"
	"testing"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/web"
)

// An A/B test's winner and its margin: variant 1 clicked by 20 of 100,
// variant 2 by 10 of 100. The difference 0.1, its standard error
// sqrt(0.2*0.8/100 + 0.1*0.9/100) = 0.05, times 1.95996 = 0.098: from
// 0.2 to 19.8 points.
func TestABTestMargin(t *testing.T) {
	t.Parallel()
	margin := report.Compare(report.Group{Name: "1", N: 100, Converted: 20}, report.Group{Name: "2", N: 100, Converted: 10})
	words, chart := web.ABTestHTML(report.ABTest{Broadcast: "spring", Run: 7, PickBy: campaigns.PickClicks, Decided: true, Winner: 0,
		Variants: []report.Variant{{Index: 0, Label: "variant 1 (template tents)", Sent: 100, Opened: 40, Clicked: 20}, {Index: 1, Label: "variant 2 (template boots)", Sent: 100, Opened: 45, Clicked: 10}},
		Margin:   &margin})
	if want := "the winner's click rate is 10.0 points above the runner-up's (95% CI 0.2 to 19.8)"; words != want {
		t.Errorf("margin: %q, want %q", words, want)
	}
	for _, w := range []string{
		`<title id="variant-chart-1-title">spring, run 7: click rate per variant</title>`,
		`<desc id="variant-chart-1-desc">variant 1 (template tents) (winner): 20.0%; variant 2 (template boots): 10.0%</desc>`,
		`data-label="variant 1 (template tents) (winner)">20.0%</text>`, `data-label="variant 2 (template boots)">10.0%</text>`,
	} {
		if !strings.Contains(chart, w) {
			t.Errorf("variant chart lacks %s:\n%s", w, chart)
		}
	}
}
