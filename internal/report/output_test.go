package report

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParsePeriod(t *testing.T) {
	t.Parallel()
	today := time.Date(2031, 3, 15, 17, 30, 0, 0, time.FixedZone("x", 5*3600)) // 12:30 UTC
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		from, to   string
		want       Period
		wantParam  string
		wantPrefix string
	}{
		{"", "", Period{day(2031, 2, 14), day(2031, 3, 16)}, "", ""},
		{"2031-03-01", "", Period{day(2031, 3, 1), day(2031, 3, 16)}, "", ""},
		{"", "2031-01-10", Period{day(2030, 12, 11), day(2031, 1, 10)}, "", ""},
		{" 2031-01-01 ", "2031-01-02", Period{day(2031, 1, 1), day(2031, 1, 2)}, "", ""},
		{"2031-1-1", "", Period{}, "from", `from: "2031-1-1" is not a day: write it YYYY-MM-DD`},
		{"", "soon", Period{}, "to", `to: "soon" is not a day`},
		{"2031-01-02", "2031-01-02", Period{}, "from", "from: 2031-01-02 must be before to, 2031-01-02"},
		{"2027-01-01", "2031-01-02", Period{}, "from", "from: a period spans at most 1098 days"},
	}
	for _, tt := range tests {
		got, err := ParsePeriod(tt.from, tt.to, today)
		var pe *ParamError
		switch {
		case tt.wantParam == "" && (err != nil || !got.From.Equal(tt.want.From) || !got.To.Equal(tt.want.To)):
			t.Errorf("%q %q: %v %v, want %v", tt.from, tt.to, got, err, tt.want)
		case tt.wantParam != "" && (!errors.As(err, &pe) || pe.Param != tt.wantParam || !strings.HasPrefix(err.Error(), tt.wantPrefix)):
			t.Errorf("%q %q: error %v, want one naming %s: %q", tt.from, tt.to, err, tt.wantParam, tt.wantPrefix)
		}
	}
}

// A table's keys and labels, its order, its total and its rates.
func TestNewTable(t *testing.T) {
	t.Parallel()
	lines := []Line{
		{Name: "welcome", Index: 1, Figures: Figures{Sent: 4, Opened: 1, Revenue: 10}},
		{Name: "offer: surprise", Index: 0, Figures: Figures{Sent: 1, HardBounced: 1}},
		{Name: "welcome", Index: 0, Figures: Figures{Sent: 5, Opened: 5, Converted: 1, Conversions: 2, Revenue: 25}},
	}
	tb := NewTable(ByStep, Period{}, lines, time.Time{})
	var keys, labels []string
	for _, r := range tb.Rows {
		keys, labels = append(keys, r.Key), append(labels, r.Label)
	}
	if strings.Join(keys, "|") != "offer: surprise/1|welcome/1|welcome/2" || strings.Join(labels, "|") != "offer: surprise, step 1|welcome, step 1|welcome, step 2" {
		t.Errorf("keys %q labels %q", keys, labels)
	}
	want := Figures{Sent: 10, HardBounced: 1, Opened: 6, Converted: 1, Conversions: 2, Revenue: 35}
	if tb.Total.Figures != want || tb.Total.Key != "total" {
		t.Errorf("total %+v", tb.Total)
	}
	if r := tb.Total.Rates; *r.Open != 0.6 || *r.Bounce != 0.1 || *r.Conversion != 0.1 || *r.RevenuePerEmail != 3.5 {
		t.Errorf("rates %+v", r)
	}
	if r := NewTable(ByTone, Period{}, []Line{{Name: ""}}, time.Time{}).Rows[0]; r.Label != "(no tone)" || r.Rates.Open != nil {
		t.Errorf("an empty tone, nothing sent: %+v", r)
	}
	var stages []string
	for _, r := range NewTable(ByStage, Period{}, []Line{{Name: "retention"}, {Name: "awareness"}, {Name: "decision"}}, time.Time{}).Rows {
		stages = append(stages, r.Key)
	}
	if strings.Join(stages, " ") != "awareness decision retention" {
		t.Errorf("stages in the order %v", stages)
	}
	if r := NewTable(ByVariant, Period{}, []Line{{Name: "launch", Index: 2}}, time.Time{}).Rows[0]; r.Key != "launch/3" || r.Label != "launch, variant 3" {
		t.Errorf("variant %+v", r)
	}
}

// The winner's margin is over the best of the other variants on the test's
// metric.
func TestABTestMargin(t *testing.T) {
	t.Parallel()
	ab := ABTest{PickBy: "clicks", Decided: true, Winner: 2, Variants: []Variant{
		{Index: 0, Label: "a", Sent: 10, Clicked: 2},
		{Index: 1, Label: "b", Sent: 4, Clicked: 1, Opened: 4}, // 25% beats a's 20%
		{Index: 2, Label: "c", Sent: 10, Clicked: 5, Revenue: 50, RevenueSq: 500},
	}}
	ab.SetMargin()
	if m := ab.Margin; m == nil || m.Treatment.Name != "c" || m.Control.Name != "b" || m.Treatment.Converted != 5 || m.Control.Converted != 1 ||
		m.Rate == nil || m.Rate.Diff != 0.25 {
		t.Errorf("margin %+v", ab.Margin)
	}
	ab.Decided = false
	if ab.SetMargin(); ab.Margin != nil {
		t.Errorf("an undecided test has a margin: %+v", ab.Margin)
	}
}

func TestRegressedShare(t *testing.T) {
	t.Parallel()
	s := Stage{MovedOn: 3, Regressed: 1}
	if s.SetShare(); s.RegressedShare == nil || *s.RegressedShare != 0.25 {
		t.Errorf("share %v", s.RegressedShare)
	}
	s = Stage{}
	if s.SetShare(); s.RegressedShare != nil {
		t.Errorf("share of no moves %v", *s.RegressedShare)
	}
}

// CSV: the header, the rows then the total; a label a spreadsheet would
// run as a formula is defused.
func TestWriteCSV(t *testing.T) {
	t.Parallel()
	tb := NewTable(ByTemplate, Period{}, []Line{{Name: "=HYPERLINK(1)", Figures: Figures{Sent: 2, Opened: 1, Revenue: 3}}}, time.Time{})
	var b bytes.Buffer
	if err := WriteCSV(&b, tb); err != nil {
		t.Fatal(err)
	}
	want := strings.Join(csvHeader, ",") + "\n" +
		"'=HYPERLINK(1),'=HYPERLINK(1),2,0,0,0,0,1,0,0,0,0,3.00,0.5000,0.0000,0.0000,0.0000,0.0000,0.0000,1.50\n" +
		"total,Total,2,0,0,0,0,1,0,0,0,0,3.00,0.5000,0.0000,0.0000,0.0000,0.0000,0.0000,1.50\n"
	if b.String() != want {
		t.Errorf("CSV\n%s\nwant\n%s", b.String(), want)
	}
}

// Compare's intervals, computed by hand: Wald for the rates, Welch for the
// revenue per contact; none when a group is under 2 or neither varies.
func TestCompare(t *testing.T) {
	c := Compare(Group{N: 2, Converted: 2, Revenue: 130, RevenueSq: 50*50 + 80*80}, Group{N: 2, Converted: 1, Revenue: 20, RevenueSq: 20 * 20})
	near := func(got, want float64) bool { return got-want < 1e-3 && want-got < 1e-3 }
	// 0.5 ± 1.96·√(0 + 0.25/2); 55 ± 1.96·√(450/2 + 200/2).
	if c.Rate == nil || !near(c.Rate.Diff, 0.5) || !near(c.Rate.High-c.Rate.Diff, 0.69295) {
		t.Errorf("rate %+v", c.Rate)
	}
	if c.Revenue == nil || !near(c.Revenue.Diff, 55) || !near(c.Revenue.High-c.Revenue.Diff, 35.3337) {
		t.Errorf("revenue %+v", c.Revenue)
	}
	for name, c := range map[string]Comparison{
		"nobody converted":     Compare(Group{N: 24}, Group{N: 41}),
		"a group of one":       Compare(Group{N: 1, Converted: 1, Revenue: 5, RevenueSq: 25}, Group{N: 10, Converted: 3, Revenue: 30, RevenueSq: 300}),
		"everyone, no revenue": Compare(Group{N: 3, Converted: 3}, Group{N: 4, Converted: 4}),
	} {
		if c.Rate != nil || c.Revenue != nil {
			t.Errorf("%s: %+v %+v, want no intervals", name, c.Rate, c.Revenue)
		}
	}
}

// A difference with its 95% interval, said in words as the Reports page
// says it.
func TestDiffWords(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		in   *Interval
		want string
	}{
		{"more", &Interval{Diff: 0.041, Low: 0.012, High: 0.070}, "drawn contacts converted 4.1 points more (95% CI 1.2 to 7.0)"},
		{"less", &Interval{Diff: -0.02, Low: -0.035, High: -0.005}, "drawn contacts converted 2.0 points less (95% CI -3.5 to -0.5)"},
		{"across zero", &Interval{Diff: 0.01, Low: -0.01, High: 0.03}, "no significant difference (95% CI -1.0 to 3.0)"},
		{"too small", nil, NothingToCompare},
	} {
		if got := DiffWords("drawn contacts converted", c.in, 100, "%.1f points", "more", "less"); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	money := DiffWords("drawn contacts spent", &Interval{Diff: 3.5, Low: 1.25, High: 5.75}, 1, "%.2f", "more per contact", "less per contact")
	if want := "drawn contacts spent 3.50 more per contact (95% CI 1.25 to 5.75)"; money != want {
		t.Errorf("revenue: %q, want %q", money, want)
	}
}
