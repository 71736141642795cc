package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/report/reporttest"
	"github.com/waymark/waymark/internal/store"
)

// writeReportHistory writes reporttest's history (all three phases) based
// 40 days before now, and returns its base and the period of its days.
func writeReportHistory(t *testing.T, pool *pgxpool.Pool) (time.Time, report.Period) {
	t.Helper()
	t0 := clock.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -40)
	for i := 0; i < reporttest.Phases; i++ {
		if err := reporttest.Phase(context.Background(), pool, t0, i); err != nil {
			t.Fatal(err)
		}
	}
	return t0, report.Period{From: t0, To: t0.AddDate(0, 0, 3)}
}

// cells splits an aligned table's line into its cells (two spaces or more
// apart).
func cells(line string) []string {
	return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
}

// tableRow finds the line of the table whose first cell is first.
func tableRow(out, first string) []string {
	for _, l := range strings.Split(out, "\n") {
		if c := cells(l); len(c) > 1 && c[0] == first {
			return c
		}
	}
	return nil
}

// `waymark report` refreshes the reports and prints them: the figures of
// reporttest's history worked out by hand, by template and by offer with
// the holdout, and as JSON; bad flags are refused, naming the flag.
func TestReportCommand(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	t0, p := writeReportHistory(t, pool)
	from, to := "--from="+t0.Format(time.DateOnly), "--to="+p.To.Format(time.DateOnly)
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, err := runWaymark(t, url, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out
	}

	out := mustRun("report", from, to)
	if want := "Emails sent " + t0.Format(time.DateOnly) + " to " + t0.AddDate(0, 0, 2).Format(time.DateOnly) + " (UTC), by template"; !strings.HasPrefix(out, want) {
		t.Errorf("report starts %q, want %q", out, want)
	}
	for first, want := range map[string][]string{
		"template": {"template", "sent", "delivered", "bounced hard", "soft", "complaints", "opened", "clicked", "unsubscribed", "converted", "conversions", "revenue", "per recipient"},
		// 101 102 109 110: 101 delivered, clicked and converted (50), 102 soft-bounced, 110 opened.
		"w1":    {"w1", "4", "1 (25.0%)", "0", "1", "0 (0.0%)", "2 (50.0%)", "1 (25.0%)", "0 (0.0%)", "1 (25.0%)", "1", "50.00", "12.50"},
		"w2":    {"w2", "1", "0 (0.0%)", "1", "0", "0 (0.0%)", "0 (0.0%)", "0 (0.0%)", "0 (0.0%)", "0 (0.0%)", "0", "0.00", "0.00"},
		"o1":    {"o1", "1", "1 (100.0%)", "0", "0", "0 (0.0%)", "1 (100.0%)", "1 (100.0%)", "0 (0.0%)", "1 (100.0%)", "2", "30.00", "30.00"},
		"Total": {"Total", "8", "4 (50.0%)", "1", "1", "1 (12.5%)", "5 (62.5%)", "2 (25.0%)", "1 (12.5%)", "3 (37.5%)", "4", "110.00", "13.75"},
	} {
		if got := tableRow(out, first); !reflect.DeepEqual(got, want) {
			t.Errorf("row %s: %q, want %q\n%s", first, got, want, out)
		}
	}

	out = mustRun("report", from, to, "--by", "offer")
	if got, want := tableRow(out, "surprise"), []string{"surprise", "1", "1 (100.0%)", "0", "0", "0 (0.0%)", "1 (100.0%)", "1 (100.0%)", "0 (0.0%)", "1 (100.0%)", "2", "30.00", "30.00"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row surprise: %q, want %q\n%s", got, want, out)
	}
	// Contacts 1 (80 within 30 days of the draw) and 3 (30) drawn, 4 (25)
	// and 6 (its 60 came before the draw) held out.
	for _, want := range [][]string{
		{"surprise", "drawn", "2", "2 (100.0%)", "110.00", "55.00"},
		{"holdout", "2", "1 (50.0%)", "25.00", "12.50"},
	} {
		found := false
		for _, l := range strings.Split(out, "\n") {
			found = found || reflect.DeepEqual(cells(l), want)
		}
		if !found {
			t.Errorf("by offer lacks the line %q:\n%s", want, out)
		}
	}
	// Rates 1 and 0.5: ±1.96·√(0/2 + 0.25/2) = ±0.693; revenue 55 and
	// 12.5 a contact, ±1.96·√(1250/2 + 312.5/2) = ±54.78.
	if want := "surprise, drawn against held out: no significant difference (95% CI -19.3 to 119.3); revenue: no significant difference (95% CI -12.28 to 97.28)"; !strings.Contains(out, want) {
		t.Errorf("by offer lacks %q:\n%s", want, out)
	}

	var got struct {
		report.Table
		Holdouts []report.Holdout `json:"holdouts"`
	}
	if err := json.Unmarshal([]byte(mustRun("report", from, to, "--by=tone", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	byKey := map[string]report.Figures{}
	for _, r := range got.Rows {
		byKey[r.Key] = r.Figures
	}
	wantTone := map[string]report.Figures{
		"":      {Sent: 2, Delivered: 2, Complained: 1, Opened: 2, Unsubscribed: 1, Converted: 1, Conversions: 1, Revenue: 30},
		"plain": {Sent: 3, SoftBounced: 1, Opened: 1},
		"warm":  {Sent: 3, Delivered: 2, HardBounced: 1, Opened: 2, Clicked: 2, Converted: 2, Conversions: 3, Revenue: 80},
	}
	if got.By != report.ByTone || !reflect.DeepEqual(byKey, wantTone) || got.Total.Sent != 8 || got.Total.Revenue != 110 || got.Holdouts != nil {
		t.Errorf("--json by tone: %+v", got)
	}

	// By default, the last 30 days: the history is older.
	if out := mustRun("report"); !strings.Contains(out, "No emails in the period.") {
		t.Errorf("default period:\n%s", out)
	}
	for args, want := range map[string]string{
		"--by nope":                           `report: --by: unknown report dimension "nope"`,
		"--from 2026-13-01":                   `report: --from: "2026-13-01" is not a day: write it YYYY-MM-DD`,
		"--to yesterday":                      `report: --to: "yesterday" is not a day`,
		"--from 2026-02-01 --to 2026-01-01":   `report: --from: 2026-02-01 must be before to, 2026-01-01`,
		"--from 2020-01-01 --to 2026-01-01":   `report: --from: a period spans at most`,
		"--by template extra":                 `report: unexpected argument "extra"`,
		"--from 2026-01-01 --to 2026-01-01 x": `report: unexpected argument "x"`,
	} {
		_, _, err := runWaymark(t, url, append([]string{"report"}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("report %s: %v, want %q", args, err, want)
		}
	}
}

// The reports under /api/v1/reports of a running server: JSON, CSV, the
// holdouts, the A/B tests, the stages and the days, and 400s naming the
// bad parameter.
func TestReportsAPI(t *testing.T) {
	t.Parallel()
	base, pool := startServe(t, "")
	t0, p := writeReportHistory(t, pool)
	key, err := store.New(pool).CreateAPIKey(context.Background(), "reports")
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	// The history was written with past times after the server's first
	// refresh: a full refresh counts it.
	if code, _, body := call("POST", "/api/v1/stats/refresh", `{"full": true}`); code != 200 {
		t.Fatalf("refresh: %d %s", code, body)
	}
	period := "from=" + t0.Format(time.DateOnly) + "&to=" + p.To.Format(time.DateOnly)

	code, _, body := call("GET", "/api/v1/reports?by=step&"+period, "")
	var tb report.Table
	if err := json.Unmarshal([]byte(body), &tb); code != 200 || err != nil {
		t.Fatalf("by step: %d %v %s", code, err, body)
	}
	steps := map[string]report.Figures{}
	labels := map[string]string{}
	for _, r := range tb.Rows {
		steps[r.Key], labels[r.Key] = r.Figures, r.Label
	}
	wantSteps := map[string]report.Figures{
		"welcome/1":         {Sent: 4, Delivered: 1, SoftBounced: 1, Opened: 2, Clicked: 1, Converted: 1, Conversions: 1, Revenue: 50},
		"welcome/2":         {Sent: 1, HardBounced: 1},
		"offer: surprise/1": {Sent: 1, Delivered: 1, Opened: 1, Clicked: 1, Converted: 1, Conversions: 2, Revenue: 30},
	}
	if !reflect.DeepEqual(steps, wantSteps) || labels["welcome/2"] != "welcome, step 2" || tb.By != report.ByStep {
		t.Errorf("by step: %+v %v", steps, labels)
	}

	code, h, body := call("GET", "/api/v1/reports?format=csv&"+period, "")
	wantCSV := "key,label,sent,delivered,hard_bounced,soft_bounced,complained,opened,clicked,unsubscribed,converted,conversions,revenue,open_rate,click_rate,unsubscribe_rate,bounce_rate,complaint_rate,conversion_rate,revenue_per_recipient\n" +
		"b1,b1,1,1,0,0,0,1,0,1,1,1,30.00,1.0000,0.0000,1.0000,0.0000,0.0000,1.0000,30.00\n" +
		"b2,b2,1,1,0,0,1,1,0,0,0,0,0.00,1.0000,0.0000,0.0000,0.0000,1.0000,0.0000,0.00\n" +
		"o1,o1,1,1,0,0,0,1,1,0,1,2,30.00,1.0000,1.0000,0.0000,0.0000,0.0000,1.0000,30.00\n" +
		"w1,w1,4,1,0,1,0,2,1,0,1,1,50.00,0.5000,0.2500,0.0000,0.2500,0.0000,0.2500,12.50\n" +
		"w2,w2,1,0,1,0,0,0,0,0,0,0,0.00,0.0000,0.0000,0.0000,1.0000,0.0000,0.0000,0.00\n" +
		"total,Total,8,4,1,1,1,5,2,1,3,4,110.00,0.6250,0.2500,0.1250,0.2500,0.1250,0.3750,13.75\n"
	if code != 200 || h.Get("Content-Type") != "text/csv; charset=utf-8" || body != wantCSV ||
		h.Get("Content-Disposition") != `attachment; filename="waymark-report-by-template-`+t0.Format(time.DateOnly)+`-`+t0.AddDate(0, 0, 2).Format(time.DateOnly)+`.csv"` {
		t.Errorf("CSV: %d %v\n%s\nwant\n%s", code, h, body, wantCSV)
	}

	var holdouts struct{ Items []report.Holdout }
	code, _, body = call("GET", "/api/v1/reports/holdouts?"+period, "")
	if err := json.Unmarshal([]byte(body), &holdouts); code != 200 || err != nil || len(holdouts.Items) != 1 {
		t.Fatalf("holdouts: %d %v %s", code, err, body)
	}
	if h := holdouts.Items[0]; h.Offer != "surprise" || h.Treatment.N != 2 || h.Treatment.Converted != 2 || h.Treatment.Revenue != 110 ||
		h.Control.N != 2 || h.Control.Converted != 1 || h.Control.Revenue != 25 || h.Rate == nil || h.Rate.Diff != 0.5 || h.Revenue == nil || h.Revenue.Diff != 42.5 {
		t.Errorf("holdout %+v", h)
	}

	var abtests struct{ Items []report.ABTest }
	code, _, body = call("GET", "/api/v1/reports/abtests?"+period, "")
	if err := json.Unmarshal([]byte(body), &abtests); code != 200 || err != nil || len(abtests.Items) != 1 {
		t.Fatalf("abtests: %d %v %s", code, err, body)
	}
	if ab := abtests.Items[0]; ab.Broadcast != "launch" || !ab.Decided || ab.Winner != 1 || len(ab.Variants) != 2 ||
		ab.Variants[0].Converted != 1 || ab.Variants[0].Revenue != 30 || ab.Variants[1].Opened != 1 || ab.Margin == nil {
		t.Errorf("A/B test %+v", ab)
	}

	var stages struct{ Items []report.Stage }
	code, _, body = call("GET", "/api/v1/reports/stages?"+period, "")
	if err := json.Unmarshal([]byte(body), &stages); code != 200 || err != nil || len(stages.Items) != 5 {
		t.Fatalf("stages: %d %v %s", code, err, body)
	}
	if a := stages.Items[0]; a.Stage != "awareness" || a.MovedOn != 2 || a.MedianToNext == nil || *a.MedianToNext != (12*time.Hour+30*24*time.Hour+2*time.Hour)/2 ||
		a.Conversions != 2 || a.Revenue != 65 {
		t.Errorf("awareness %+v", a)
	}

	var days struct{ Items []report.Day }
	code, _, body = call("GET", "/api/v1/reports/days?"+period, "")
	if err := json.Unmarshal([]byte(body), &days); code != 200 || err != nil || len(days.Items) != 2 {
		t.Fatalf("days: %d %v %s", code, err, body)
	}
	if d := days.Items[1]; !d.Day.Equal(t0.AddDate(0, 0, 1)) || d.Conversions != 2 || d.Revenue != 70 || d.Attributed != 1 || d.AttributedRevenue != 30 {
		t.Errorf("day 1 %+v", d)
	}

	for path, field := range map[string]string{
		"/api/v1/reports?by=nope":                            "by",
		"/api/v1/reports?format=xml":                         "format",
		"/api/v1/reports?from=2026-13-01":                    "from",
		"/api/v1/reports/stages?to=tomorrow":                 "to",
		"/api/v1/reports/days?from=2026-02-01&to=2026-01-01": "from",
	} {
		code, _, body := call("GET", path, "")
		var e struct{ Error, Field string }
		if err := json.Unmarshal([]byte(body), &e); code != 400 || err != nil || e.Field != field || !strings.HasPrefix(e.Error, field+": ") {
			t.Errorf("%s: %d %s, want 400 naming %s", path, code, body, field)
		}
	}
}
