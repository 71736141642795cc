package web_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/web"
)

// reportHistory adds to the fixture's history (Ann's welcome email,
// opened by her) what the Reports page sums, and refreshes the rollups:
//
//	email      contact  template/sequence  tone        what came of it
//	A0 (fixture) ann    welcome            friendly    opened (person); credited order 40
//	S1         bob      winback            empathetic  opened and clicked (person); credited order 25
//	S2         carol    winback            friendly    opened by a machine only
//	S3         carol    welcome            friendly    hard bounce
//
// and two orders credited to no email (Bob 10, Dan 30). The offer
// "surprise" drew Ann and Bob and held out Carol, Dan and Eve, two days
// ago. By template: welcome sent 2, opened 1, 1 hard bounce, 1
// conversion, revenue 40; winback sent 2, opened 1, clicked 1, 1
// conversion, revenue 25.
func reportHistory(t *testing.T, f *fixture) time.Time {
	t.Helper()
	ctx := context.Background()
	now := clock.Now().UTC()
	if _, err := f.st.Ingest(ctx, []ingest.Message{
		{Kind: ingest.KindIdentify, UserID: "dan", MessageID: "dan-identify", Name: "identify", Email: "dan@example.com", Traits: json.RawMessage(`{}`), Properties: json.RawMessage(`{}`), Timestamp: now.Add(-3 * time.Hour)},
		{Kind: ingest.KindIdentify, UserID: "eve", MessageID: "eve-identify", Name: "identify", Email: "eve@example.com", Traits: json.RawMessage(`{}`), Properties: json.RawMessage(`{}`), Timestamp: now.Add(-3 * time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	id := func(email string) int64 {
		n, err := f.st.ContactRef(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	dan, eve := id("dan@example.com"), id("eve@example.com")
	var a0 int64
	if err := f.pool.QueryRow(ctx, `SELECT id FROM sends WHERE contact_id = $1`, f.ann).Scan(&a0); err != nil {
		t.Fatal(err)
	}
	send := func(contact int64, tmpl, tone string, ago time.Duration) int64 {
		var n int64
		if err := f.pool.QueryRow(ctx, `INSERT INTO sends (contact_id, sequence, step, template, template_version, status, due_at, sent_at, tone, tone_reason)
			VALUES ($1, $2, 0, $2, 1, 'sent', $3, $3, $4, 'test') RETURNING id`, contact, tmpl, now.Add(-ago), tone).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	s1 := send(f.bob, "winback", "empathetic", 2*time.Hour)
	s2 := send(f.carol, "winback", "friendly", 2*time.Hour)
	s3 := send(f.carol, "welcome", "friendly", 3*time.Hour)
	event := func(contact, sendID int64, msgID, name, props string, ago time.Duration) {
		if _, err := f.pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
			VALUES ($1, $2, 'internal', $3, jsonb_build_object('send_id', $4::bigint) || $5::jsonb, $6)`,
			contact, msgID, name, sendID, props, now.Add(-ago)); err != nil {
			t.Fatal(err)
		}
	}
	event(f.bob, s1, "s1-open", "email_opened", `{}`, 100*time.Minute)
	event(f.bob, s1, "s1-click", "email_clicked", `{"url": "https://example.com/tents"}`, 99*time.Minute)
	event(f.carol, s2, "s2-open", "email_opened", `{"machine": true}`, 110*time.Minute)
	event(f.carol, s3, "s3-bounce", "email_bounced", `{"provider": "waymark", "type": "hard"}`, 170*time.Minute)
	conversion := func(contact int64, msgID string, value float64, sendID int64, touch string, ago time.Duration) {
		var sid *int64
		var tch *string
		if sendID != 0 {
			sid, tch = &sendID, &touch
		}
		if _, err := f.pool.Exec(ctx, `INSERT INTO conversions (contact_id, message_id, event, occurred_at, value, stage, send_id, touch, touch_at, reason)
			VALUES ($1, $2, 'order_completed', $3, $4, (SELECT stage FROM contacts WHERE id = $1), $5, $6, CASE WHEN $5::bigint IS NOT NULL THEN $3::timestamptz - interval '5 minutes' END, 'test')`,
			contact, msgID, now.Add(-ago), value, sid, tch); err != nil {
			t.Fatal(err)
		}
	}
	conversion(f.ann, "ann-order", 40, a0, "opened", 10*time.Minute)
	conversion(f.bob, "bob-order", 25, s1, "clicked", 90*time.Minute)
	conversion(f.bob, "bob-order-2", 10, 0, "", 80*time.Minute)
	conversion(dan, "dan-order", 30, 0, "", 60*time.Minute)
	for _, d := range []struct {
		contact int64
		drawn   bool
	}{{f.ann, true}, {f.bob, true}, {f.carol, false}, {dan, false}, {eve, false}} {
		if _, err := f.pool.Exec(ctx, `INSERT INTO offer_draws (contact_id, offer, drawn, at) VALUES ($1, 'surprise', $2, $3)`,
			d.contact, d.drawn, now.Add(-48*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// The history is written after the fixture's refresh with times
	// before it: a full refresh counts it (an incremental one takes what
	// was sent since the last).
	if err := f.st.RefreshReports(ctx, now, true); err != nil {
		t.Fatal(err)
	}
	return now
}

// dashClient logs in with key and returns a client with the session.
func dashClient(t *testing.T, f *fixture, key string) func(path string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(f.srv.URL+"/dashboard/login", url.Values{"key": {key}, "next": {"/dashboard/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/dashboard/" {
		t.Fatalf("login landed on %s", resp.Request.URL.Path)
	}
	return func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

var (
	rowRe  = regexp.MustCompile(`(?s)<tr data-key="([^"]*)">(.*?)</tr>`)
	cellRe = regexp.MustCompile(`<td class="num" data-col="([^"]+)">([^<]*)</td>`)
)

// tableRows reads the rows (data-key, and each data-col cell) of the
// table with the id in page, in order.
func tableRows(t *testing.T, page, id string) ([]string, map[string]map[string]string) {
	t.Helper()
	start := strings.Index(page, `id="`+id+`"`)
	if start < 0 {
		t.Fatalf("no table %s in the page", id)
	}
	page = page[start:]
	page = page[:strings.Index(page, "</table>")]
	var keys []string
	cells := map[string]map[string]string{}
	for _, m := range rowRe.FindAllStringSubmatch(page, -1) {
		keys = append(keys, m[1])
		cells[m[1]] = map[string]string{}
		for _, c := range cellRe.FindAllStringSubmatch(m[2], -1) {
			cells[m[1]][c[1]] = c[2]
		}
	}
	return keys, cells
}

// The Reports page shows the figures of a hand-computed history by
// template, sorts by any column both ways, downloads exactly the table
// shown as CSV, compares the offer's drawn and holdout contacts in words,
// and the overview and the sequences page show their share of it.
func TestReportsPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	reportHistory(t, f)
	get := dashClient(t, f, f.key)

	code, page := get("/dashboard/reports")
	if code != 200 {
		t.Fatalf("reports: %d\n%s", code, page)
	}
	keys, cells := tableRows(t, page, "report")
	want := map[string]map[string]string{
		"welcome": {"sent": "2", "delivered": "0", "hard_bounced": "1", "soft_bounced": "0", "complained": "0", "opened": "1", "open_rate": "50.0%",
			"clicked": "0", "click_rate": "0.0%", "unsubscribed": "0", "conversions": "1", "conversion_rate": "50.0%", "revenue": "40.00", "revenue_per_recipient": "20.00"},
		"winback": {"sent": "2", "delivered": "0", "hard_bounced": "0", "soft_bounced": "0", "complained": "0", "opened": "1", "open_rate": "50.0%",
			"clicked": "1", "click_rate": "50.0%", "unsubscribed": "0", "conversions": "1", "conversion_rate": "50.0%", "revenue": "25.00", "revenue_per_recipient": "12.50"},
		"total": {"sent": "4", "delivered": "0", "hard_bounced": "1", "soft_bounced": "0", "complained": "0", "opened": "2", "open_rate": "50.0%",
			"clicked": "1", "click_rate": "25.0%", "unsubscribed": "0", "conversions": "2", "conversion_rate": "50.0%", "revenue": "65.00", "revenue_per_recipient": "16.25"},
	}
	for k, w := range want {
		for col, v := range w {
			if cells[k][col] != v {
				t.Errorf("by template, %s %s: %q, want %q", k, col, cells[k][col], v)
			}
		}
	}
	if !slices.Equal(sorted(keys), []string{"total", "welcome", "winback"}) {
		t.Errorf("rows %v, want welcome, winback and the total", keys)
	}

	// Sorted by a column, both ways; the total stays last.
	for _, c := range []struct {
		sort string
		want []string
	}{
		{"-revenue", []string{"welcome", "winback", "total"}},
		{"revenue", []string{"winback", "welcome", "total"}},
		{"-click_rate", []string{"winback", "welcome", "total"}},
		{"click_rate", []string{"welcome", "winback", "total"}},
		{"-key", []string{"winback", "welcome", "total"}},
	} {
		_, page := get("/dashboard/reports?sort=" + url.QueryEscape(c.sort))
		if keys, _ := tableRows(t, page, "report"); !slices.Equal(keys, c.want) {
			t.Errorf("sort=%s: rows %v, want %v", c.sort, keys, c.want)
		}
	}
	// The column's heading links to the other direction.
	_, page = get("/dashboard/reports?sort=-revenue")
	if !strings.Contains(page, `aria-sort="descending"`) ||
		!regexp.MustCompile(`href="\?by=template&amp;from=[0-9-]+&amp;sort=revenue&amp;to=[0-9-]+" data-sort="revenue"`).MatchString(page) {
		t.Errorf("sort=-revenue: the heading does not say descending or link to ascending")
	}

	// The CSV is the table shown, in its order.
	resp, err := http.DefaultClient.Do(mustRequest(t, f, "/dashboard/reports.csv?sort=revenue"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/dashboard/login" {
		t.Errorf("CSV without a session: %d at %s, want the login form", resp.StatusCode, resp.Request.URL.Path)
	}
	code, body := get("/dashboard/reports.csv?sort=revenue")
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != 200 || err != nil {
		t.Fatalf("CSV: %d %v\n%s", code, err, body)
	}
	wantCSV := [][]string{
		{"key", "label", "sent", "delivered", "hard_bounced", "soft_bounced", "complained", "opened", "clicked", "unsubscribed", "converted", "conversions", "revenue",
			"open_rate", "click_rate", "unsubscribe_rate", "bounce_rate", "complaint_rate", "conversion_rate", "revenue_per_recipient"},
		{"winback", "winback", "2", "0", "0", "0", "0", "1", "1", "0", "1", "1", "25.00", "0.5000", "0.5000", "0.0000", "0.0000", "0.0000", "0.5000", "12.50"},
		{"welcome", "welcome", "2", "0", "1", "0", "0", "1", "0", "0", "1", "1", "40.00", "0.5000", "0.0000", "0.0000", "0.5000", "0.0000", "0.5000", "20.00"},
		{"total", "Total", "4", "0", "1", "0", "0", "2", "1", "0", "2", "2", "65.00", "0.5000", "0.2500", "0.0000", "0.2500", "0.0000", "0.5000", "16.25"},
	}
	if !slices.EqualFunc(recs, wantCSV, slices.Equal) {
		t.Errorf("CSV:\n%v\nwant\n%v", recs, wantCSV)
	}

	// By tone: the conversion rates, in the table and the chart.
	_, page = get("/dashboard/reports")
	for _, w := range []string{
		`<tr data-key="empathetic"><td>empathetic</td><td class="num">1</td><td class="num">1</td><td class="num">100.0%</td><td class="num">25.00</td><td class="num">25.00</td></tr>`,
		`<tr data-key="friendly"><td>friendly</td><td class="num">3</td><td class="num">1</td><td class="num">33.3%</td><td class="num">40.00</td><td class="num">13.33</td></tr>`,
		`<title id="tone-chart-title">Conversion rate by tone</title><desc id="tone-chart-desc">`,
		`class="value" data-label="empathetic">100.0%</text>`,
		`class="value" data-label="friendly">33.3%</text>`,
		`<svg class="chart" id="stage-chart" role="img" aria-labelledby="stage-chart-title stage-chart-desc"`,
		// Drawn: Ann (40) and Bob (25 + 10) converted, 2 of 2; held
		// out: Dan (30) of Carol, Dan and Eve. Rates 1 and 1/3: the
		// difference 2/3, its standard error sqrt((1/3)(2/3)/3) =
		// 0.27217, times 1.95996 = 0.53343. Revenue per contact 37.50
		// and 10.00: variances 12.5/2 and 300/3, standard error
		// sqrt(106.25) = 10.3078, times 1.95996 = 20.2028.
		`<td class="num" data-k="drawn-rate">100.0%</td><td class="num">37.50</td>`,
		`<td class="num" data-k="holdout-rate">33.3%</td><td class="num">10.00</td>`,
		`drawn contacts converted 66.7 points more (95% CI 13.3 to 120.0)`,
		`drawn contacts spent 27.50 more per contact (95% CI 7.30 to 47.70)`,
		`<title id="holdout-chart-title">Offers: drawn vs holdout conversion rate</title>`,
		`data-offer="surprise" data-group="difference">+66.7 points</text>`,
		// Revenue per day: 4 orders, 105 in all, 2 of them (65)
		// credited to an email.
		`<tr data-day="total"><th>total</th><td class="num">4</td><td class="num">105.00</td><td class="num">2</td><td class="num">65.00</td></tr>`,
		`<desc id="revenue-chart-desc">30 days: revenue 105.00 in all, 65.00 of it credited to an email</desc>`,
		`No A/B test ran in this period.`,
	} {
		if !strings.Contains(page, w) {
			t.Errorf("the reports page lacks %s", w)
		}
	}
	// The stages at send time add up to the emails (4 sent, 2
	// converted), and the stages' conversions to the orders (4, 105).
	sumCol := func(table string, col int) (n float64) {
		start := strings.Index(page, `id="`+table+`"`)
		part := page[start : start+strings.Index(page[start:], "</tbody>")]
		for _, m := range regexp.MustCompile(`(?s)<tr data-(?:key|stage)="[^"]*">(.*?)</tr>`).FindAllStringSubmatch(part, -1) {
			tds := regexp.MustCompile(`<td[^>]*>([^<]*)</td>`).FindAllStringSubmatch(m[1], -1)
			var v float64
			_ = json.Unmarshal([]byte(strings.ReplaceAll(tds[col][1], ",", "")), &v)
			n += v
		}
		return n
	}
	if s, c := sumCol("stages-sent", 1), sumCol("stages-sent", 2); s != 4 || c != 2 {
		t.Errorf("by stage at send time: %v sent, %v converted; want 4 and 2", s, c)
	}
	if n, rev := sumCol("stage-economics", 3), sumCol("stage-economics", 4); n != 4 || rev != 105 {
		t.Errorf("stage economics: %v conversions, %v revenue; want 4 and 105", n, rev)
	}

	// Another dimension, and mistakes named.
	_, page = get("/dashboard/reports?by=tone&sort=-sent")
	if keys, cells := tableRows(t, page, "report"); !slices.Equal(keys, []string{"friendly", "empathetic", "total"}) || cells["friendly"]["conversion_rate"] != "33.3%" {
		t.Errorf("by tone, largest first: %v %v", keys, cells)
	}
	for _, c := range []struct{ path, want string }{
		{"/dashboard/reports?sort=price", `sort: unknown column &#34;price&#34;`},
		{"/dashboard/reports?by=colour", `by: unknown report dimension &#34;colour&#34;: use one of template, step`},
		{"/dashboard/reports?from=last-week", `from: &#34;last-week&#34; is not a day: write it YYYY-MM-DD`},
		{"/dashboard/reports.csv?by=colour", `by: unknown report dimension`},
	} {
		if code, page := get(c.path); code != 400 || !strings.Contains(page, c.want) {
			t.Errorf("%s: %d, want 400 saying %s", c.path, code, c.want)
		}
	}

	// The overview: the period's rates and revenue.
	_, page = get("/dashboard/")
	for k, v := range map[string]string{"sent": "4", "open_rate": "50.0%", "click_rate": "25.0%", "unsubscribe_rate": "0.0%",
		"bounce_rate": "25.0%", "complaint_rate": "0.0%", "revenue": "65.00"} {
		if !strings.Contains(page, `data-k="`+k+`">`+v+`<`) {
			t.Errorf("overview: %s is not %s", k, v)
		}
	}
	if !strings.Contains(page, `href="/dashboard/reports?by=template&amp;from=`) {
		t.Errorf("overview: no link to the Reports page")
	}

	// The sequences page: its steps' figures and the offer's holdout.
	_, page = get("/dashboard/sequences")
	if _, cells := tableRows(t, page, "step-report"); cells["total"]["sent"] != "4" || cells["total"]["revenue"] != "65.00" || cells["total"]["conversion_rate"] != "50.0%" {
		t.Errorf("sequences: the steps' total %v, want 4 sent, 65.00, 50.0%%", cells["total"])
	}
	for _, w := range []string{`drawn contacts converted 66.7 points more (95% CI 13.3 to 120.0)`, `href="/dashboard/reports?by=step&amp;`, `href="/dashboard/reports?by=offer&amp;`} {
		if !strings.Contains(page, w) {
			t.Errorf("sequences: lacks %s", w)
		}
	}
}

// A read-only key sees the reports.
func TestReportsReadOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	key, err := f.st.CreateAPIKeyWith(context.Background(), "viewer", true)
	if err != nil {
		t.Fatal(err)
	}
	get := dashClient(t, f, key)
	if code, page := get("/dashboard/reports"); code != 200 || !strings.Contains(page, `<h1>Reports</h1>`) || !strings.Contains(page, `href="/dashboard/reports" aria-current="page"`) {
		t.Errorf("read-only key: %d, want the Reports page with its navigation link", code)
	}
}

func mustRequest(t *testing.T, f *fixture, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// The Reports page in a real browser: sorting by a heading's link, the
// charts drawn with their titles, the numbers beside them. With
// WAYMARK_SCREENSHOTS=DIR the page is saved there as
// dashboard-reports.png.
func TestReportsInChromium(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	reportHistory(t, f)
	b := newBrowser(t)
	shots := os.Getenv("WAYMARK_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	b.open(f.srv.URL+"/dashboard/reports", "/dashboard/login")
	b.eval(fmt.Sprintf(`document.getElementById("key").value = %q; document.getElementById("login").click(); true`, f.key), nil)
	b.waitFor("the reports", `location.pathname === "/dashboard/reports" && document.readyState === "complete" && document.getElementById("report")`)

	rows := func() []string {
		var keys []string
		b.eval(`[...document.querySelectorAll("#report tr[data-key]")].map(r => r.dataset.key + ":" + r.querySelector('[data-col="revenue"]').textContent)`, &keys)
		return keys
	}
	// Revenue, largest first, then smallest first: the heading's link.
	b.eval(`document.querySelector('#report a[data-sort="revenue"]').click(); true`, nil)
	b.waitFor("sorted by revenue", `location.search.includes("sort=-revenue") && document.readyState === "complete" && document.getElementById("report")`)
	if got, want := rows(), []string{"welcome:40.00", "winback:25.00", "total:65.00"}; !slices.Equal(got, want) {
		t.Errorf("sorted by revenue, largest first: %v, want %v", got, want)
	}
	b.eval(`document.querySelector('#report a[data-sort="revenue"]').click(); true`, nil)
	b.waitFor("sorted by revenue, ascending", `location.search.includes("sort=revenue") && !location.search.includes("sort=-") && document.readyState === "complete" && document.getElementById("report")`)
	if got, want := rows(), []string{"winback:25.00", "welcome:40.00", "total:65.00"}; !slices.Equal(got, want) {
		t.Errorf("sorted by revenue, smallest first: %v, want %v", got, want)
	}
	// The dimension picker keeps the sort.
	b.eval(`document.getElementById("by").value = "tone"; document.querySelector("form.period button").click(); true`, nil)
	b.waitFor("by tone", `location.search.includes("by=tone") && document.readyState === "complete" && document.getElementById("report")`)
	if got, want := rows(), []string{"empathetic:25.00", "friendly:40.00", "total:65.00"}; !slices.Equal(got, want) {
		t.Errorf("by tone, revenue smallest first: %v, want %v", got, want)
	}

	// The charts: each titled, drawn at a size, its numbers beside it.
	var charts []struct {
		ID, Title string
		Width     float64
	}
	b.eval(`[...document.querySelectorAll("svg.chart")].map(s => ({id: s.id, title: s.querySelector("title").textContent, width: s.getBoundingClientRect().width}))`, &charts)
	var ids []string
	for _, c := range charts {
		ids = append(ids, c.ID)
		if c.Width < 300 || c.Title == "" {
			t.Errorf("chart %s: %q, %.0f px wide", c.ID, c.Title, c.Width)
		}
	}
	if want := []string{"tone-chart", "stage-chart", "holdout-chart", "revenue-chart"}; !slices.Equal(ids, want) {
		t.Errorf("charts %v, want %v", ids, want)
	}
	var toneBars map[string]string
	b.eval(`Object.fromEntries([...document.querySelectorAll("#tone-chart text.value")].map(t => [t.dataset.label, t.textContent]))`, &toneBars)
	if fmt.Sprint(toneBars) != fmt.Sprint(map[string]string{"empathetic": "100.0%", "friendly": "33.3%"}) {
		t.Errorf("tone chart %v, want empathetic 100.0%%, friendly 33.3%%", toneBars)
	}
	var words string
	b.eval(`document.querySelector('#holdout-table tr[data-offer="surprise"] [data-k="rate-words"]').textContent`, &words)
	if words != "drawn contacts converted 66.7 points more (95% CI 13.3 to 120.0)" {
		t.Errorf("holdout in words: %q", words)
	}
	b.open(f.srv.URL+"/dashboard/reports", "/dashboard/reports")
	b.screenshot(filepath.Join(shots, "dashboard-reports.png"))
}

// A broadcast's A/B test on the Reports page and its own figures on its
// page: variant 1 ("Tents") went to Ann and Bob, who both clicked;
// variant 2 ("Boots") to Carol and Dan, of whom Carol clicked. Picked by
// clicks, variant 1 won; its margin: 1 - 1/2 = 0.5, standard error
// sqrt(0 + 0.5*0.5/2) = 0.35355, times 1.95996 = 0.69295, so from -19.3
// to 119.3 points: no significant difference.
func TestReportsABTest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	ctx := context.Background()
	now := clock.Now().UTC()
	if _, err := f.st.Ingest(ctx, []ingest.Message{{Kind: ingest.KindIdentify, UserID: "dan", MessageID: "dan-identify", Name: "identify",
		Email: "dan@example.com", Traits: json.RawMessage(`{}`), Properties: json.RawMessage(`{}`), Timestamp: now.Add(-3 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	dan, err := f.st.ContactRef(ctx, "dan@example.com")
	if err != nil {
		t.Fatal(err)
	}
	b := campaigns.Broadcast{Name: "spring", Template: "welcome", SendAt: now.Add(-3 * time.Hour).Format(time.RFC3339),
		Test: &campaigns.ABTest{Variants: []campaigns.Variant{{Subject: "Tents"}, {Subject: "Boots"}}, Share: 0.5, PickBy: campaigns.PickClicks, After: time.Hour}}
	if _, err := f.st.SaveBroadcast(ctx, b, true, now.Add(-4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	run, _, err := f.st.StartRun(ctx, b, now.Add(-3*time.Hour), false, now.Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		contact int64
		variant int
		clicked bool
	}{{f.ann, 0, true}, {f.bob, 0, true}, {f.carol, 1, true}, {dan, 1, false}} {
		var id int64
		if err := f.pool.QueryRow(ctx, `INSERT INTO sends (contact_id, step, template, template_version, status, due_at, sent_at, tone, tone_reason, broadcast, broadcast_run, variant, ab_test)
			VALUES ($1, 0, 'welcome', 1, 'sent', $2, $2, 'friendly', 'test', 'spring', $3, $4, true) RETURNING id`, c.contact, now.Add(-3*time.Hour), run.ID, c.variant).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if c.clicked {
			if _, err := f.pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
				VALUES ($1, $2, 'internal', 'email_clicked', jsonb_build_object('send_id', $3::bigint, 'broadcast', 'spring'), $4)`,
				c.contact, fmt.Sprintf("click-%d", i), id, now.Add(-150*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := f.st.DecideRun(ctx, run, campaigns.Decision{PickBy: campaigns.PickClicks, Winner: 0, Reason: "variant 1 won: 2 of 2 clicked, against 1 of 2", At: now.Add(-2 * time.Hour)}, now.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The history is written after the fixture's refresh with times
	// before it: a full refresh counts it (an incremental one takes what
	// was sent since the last).
	if err := f.st.RefreshReports(ctx, now, true); err != nil {
		t.Fatal(err)
	}
	get := dashClient(t, f, f.key)
	_, page := get("/dashboard/reports")
	for _, w := range []string{
		`<div class="abtest" data-broadcast="spring" data-run="` + fmt.Sprint(run.ID) + `">`,
		`: the winner by click rate</h3>`,
		`Decided: variant 1 won. variant 1 won: 2 of 2 clicked, against 1 of 2`,
		`Margin: no significant difference (95% CI -19.3 to 119.3).`,
		`<tr data-variant="1" class="winner"><td>variant 1 (subject &#34;Tents&#34;) (winner)</td><td class="num">2</td><td class="num">0</td><td class="num">2</td>`,
		`<td class="num" data-k="rate">100.0%</td>`, `<td class="num" data-k="rate">50.0%</td>`,
		`<title id="variant-chart-1-title">spring, run ` + fmt.Sprint(run.ID) + `: click rate per variant</title>`,
	} {
		if !strings.Contains(page, w) {
			t.Errorf("reports: lacks %s", w)
		}
	}
	_, page = get("/dashboard/broadcasts/spring")
	keys, cells := tableRows(t, page, "variant-report")
	if !slices.Equal(keys, []string{"spring/1", "spring/2", "total"}) || cells["spring/1"]["click_rate"] != "100.0%" || cells["spring/2"]["click_rate"] != "50.0%" ||
		cells["total"]["sent"] != "4" || cells["total"]["click_rate"] != "75.0%" {
		t.Errorf("broadcast page: rows %v %v; want spring/1 at 100.0%%, spring/2 at 50.0%%, 4 sent and 75.0%% in all", keys, cells)
	}
	if !strings.Contains(page, `href="/dashboard/reports?by=variant&amp;`) {
		t.Errorf("broadcast page: no link to the Reports page by variant")
	}
}

// Names from the journey are text on the page, in the charts and in the
// CSV: a template named like markup stays escaped, one named like a
// formula is not a formula in a spreadsheet.
func TestReportsHostileNames(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	ctx := context.Background()
	now := clock.Now().UTC()
	for _, c := range []struct {
		contact    int64
		tmpl, tone string
	}{{f.bob, `"><script>alert(1)</script>`, `<img src=x onerror=alert(2)>`}, {f.carol, `=HYPERLINK("http://evil.example")`, "friendly"}} {
		if _, err := f.pool.Exec(ctx, `INSERT INTO sends (contact_id, step, template, template_version, status, due_at, sent_at, tone, tone_reason)
			VALUES ($1, 0, $2, 1, 'sent', $3, $3, $4, 'test')`, c.contact, c.tmpl, now.Add(-time.Hour), c.tone); err != nil {
			t.Fatal(err)
		}
	}
	// The history is written after the fixture's refresh with times
	// before it: a full refresh counts it (an incremental one takes what
	// was sent since the last).
	if err := f.st.RefreshReports(ctx, now, true); err != nil {
		t.Fatal(err)
	}
	get := dashClient(t, f, f.key)
	_, page := get("/dashboard/reports")
	for _, bad := range []string{"<script>alert(1)", "<img src=x"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %s unescaped", bad)
		}
	}
	if !strings.Contains(page, `<td>&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</td>`) || !strings.Contains(page, `data-label="&lt;img src=x onerror=alert(2)&gt;"`) {
		t.Errorf("the names are not shown as text")
	}
	_, body := get("/dashboard/reports.csv?sort=key")
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 5 {
		t.Fatalf("CSV: %v\n%s", err, body)
	}
	var names []string
	for _, r := range recs[1:] {
		names = append(names, r[1])
	}
	if want := []string{`"><script>alert(1)</script>`, `'=HYPERLINK("http://evil.example")`, "welcome", "Total"}; !slices.Equal(names, want) {
		t.Errorf("CSV names %q, want %q", names, want)
	}
}
