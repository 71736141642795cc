package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/internal/store"
)

const broadcastAPIJourney = `rules:
  - {name: customer, from: [awareness], to: retention, when: 'ever("order_completed")'}
segments:
  - name: vip
    when: sum("order_completed", "revenue", "365d") >= 500
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: news, subject: "News for {{.Contact.FirstName}}", text: "Hello."}
  - {name: news-b, subject: "Other news", text: "Hello."}
`

// Segments and broadcasts through the API of a running serve: a segment's
// members (kept as events arrive) in keyset pages; a broadcast created,
// refused with the field named when wrong, previewed, test-sent to a seed,
// scheduled, sent by the scheduled pass, its progress read, paused,
// resumed and cancelled.
func TestBroadcastAPI(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	base, pool := startServeWith(t, broadcastAPIJourney, map[string]string{
		"WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", smtp.Addr()), "WAYMARK_FROM": "Shop <news@shop.example>", "WAYMARK_CRON": "@every 1s"})
	for i := 1; i <= 5; i++ {
		if code := postJSON(t, base, "/v1/identify", fmt.Sprintf(`{"userId":"u%d","traits":{"email":"u%d@example.com","first_name":"U%d"}}`, i, i, i)); code != 200 {
			t.Fatalf("identify: %d", code)
		}
	}
	for i := 1; i <= 3; i++ { // three vips
		if code := postJSON(t, base, "/v1/track", fmt.Sprintf(`{"userId":"u%d","event":"order_completed","properties":{"revenue":600}}`, i)); code != 200 {
			t.Fatalf("track: %d", code)
		}
	}
	if !waitUntil(10*time.Second, func() bool {
		return one(t, pool, `SELECT count(*)::text FROM segment_members WHERE segment = 'vip'`) == "3"
	}) {
		t.Fatalf("vip members: %s, want 3", one(t, pool, `SELECT count(*)::text FROM segment_members`))
	}
	key, err := store.New(pool).CreateAPIKey(context.Background(), "bcast")
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		code, b := requestWithKey(t, method, base+path, key, body)
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return code, v
	}
	// Members, two a page.
	var ids []string
	for after := ""; ; {
		code, p := call("GET", "/api/v1/segments/vip/members?limit=2&after="+after, "")
		if code != 200 {
			t.Fatalf("members: %d %v", code, p)
		}
		for _, it := range p["items"].([]any) {
			ids = append(ids, it.(map[string]any)["email"].(string))
		}
		next, _ := p["next"].(string)
		if next == "" {
			break
		}
		after = next
	}
	if strings.Join(ids, ",") != "u1@example.com,u2@example.com,u3@example.com" {
		t.Fatalf("vip members %v", ids)
	}
	if code, p := call("GET", "/api/v1/segments/nobody/members", ""); code != 404 || p["field"] != "name" {
		t.Fatalf("an unknown segment: %d %v", code, p)
	}
	if code, p := call("GET", "/api/v1/segments", ""); code != 200 || len(p["items"].([]any)) != 1 {
		t.Fatalf("segments: %d %v", code, p)
	}
	// Refused, naming the field.
	for _, c := range []struct{ body, field string }{
		{`{"name":"flash","template":"nope"}`, "template"},
		{`{"name":"flash","template":"news","audience":{"segment":"lapsed"}}`, "audience.segment"},
		{`{"name":"flash","template":"news","send_at":"soon"}`, "send_at"},
		{`{"name":"flash","template":"news","test":{"variants":[{"template":"news"},{"template":"news-b"}],"share":0.5,"pick_by":"revenue","after":"1h"}}`, "test.pick_by"},
		{`{"name":"flash","template":"news","test":{"variants":[{"subject":"A {{.Nope}}"},{"subject":"B"}],"share":0.5,"pick_by":"opens","after":"1h"}}`, "test.variants[0].subject"},
		{`{"name":"Flash!","template":"news"}`, "name"},
		{`{"name":"flash","template":"news","colour":"red"}`, "colour"},
	} {
		if code, p := call("POST", "/api/v1/broadcasts", c.body); code != 400 || p["field"] != c.field {
			t.Errorf("%s: %d %v, want 400 naming %s", c.body, code, p, c.field)
		}
	}
	code, p := call("POST", "/api/v1/broadcasts", `{"name":"flash","audience":{"stages":["retention"],"segment":"vip"},"template":"news"}`)
	if code != 201 || p["state"] != "draft" || p["source"] != "api" {
		t.Fatalf("create: %d %v", code, p)
	}
	if code, _ := call("POST", "/api/v1/broadcasts", `{"name":"flash","template":"news"}`); code != 409 {
		t.Fatalf("create again: %d, want 409", code)
	}
	if code, p := call("POST", "/api/v1/broadcasts/flash/dry-run", ""); code != 200 || p["audience"] != float64(3) {
		t.Fatalf("dry run: %d %v", code, p)
	}
	if code, p := call("POST", "/api/v1/broadcasts/flash/test", `{"to":["seed@example.com"]}`); code != 200 || smtp.Count() != 1 {
		t.Fatalf("test email: %d %v, %d received", code, p, smtp.Count())
	}
	if got := strings.Join(smtp.Messages()[0].To, ","); got != "seed@example.com" {
		t.Fatalf("the test email went to %s", got)
	}
	// Scheduled a minute ago: the next pass sends it to the three.
	at := clock.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if code, p := call("POST", "/api/v1/broadcasts/flash/schedule", `{"send_at":"`+at+`"}`); code != 200 || p["state"] != "scheduled" {
		t.Fatalf("schedule: %d %v", code, p)
	}
	smtp.WaitFor(4, 20*time.Second)
	var runs []any
	if !waitUntil(10*time.Second, func() bool {
		_, p := call("GET", "/api/v1/broadcasts/flash", "")
		runs, _ = p["runs"].([]any)
		return len(runs) == 1 && runs[0].(map[string]any)["progress"].(map[string]any)["sent"] == float64(3)
	}) {
		t.Fatalf("runs %v, want one with 3 sent", runs)
	}
	// The dashboard: the segment's size and trend, the broadcast's page
	// with its run's progress; paused from its page (with the form's
	// CSRF token).
	jar, _ := cookiejar.New(nil)
	dash := &http.Client{Jar: jar}
	resp, err := dash.PostForm(base+"/dashboard/login", url.Values{"key": {key}, "next": {"/dashboard/broadcasts"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !waitUntil(10*time.Second, func() bool {
		resp, err := dash.Get(base + "/dashboard/broadcasts")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		page, _ = io.ReadAll(resp.Body)
		return strings.Contains(string(page), `<td class="num">3</td><td><svg class="trend"`)
	}) {
		t.Fatalf("the broadcasts page does not show vip's 3 members:\n%s", page)
	}
	if !strings.Contains(string(page), `<svg class="trend"`) || !strings.Contains(string(page), `<a href="/dashboard/broadcasts/flash">flash</a>`) {
		t.Fatalf("the broadcasts page lacks the trend or the broadcast:\n%s", page)
	}
	resp, err = dash.Get(base + "/dashboard/broadcasts/flash")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `<td class="num">3</td><td class="num">0</td><td class="num">0</td><td class="num">0</td><td class="num">0</td><td class="num">3</td>`) {
		t.Fatalf("the broadcast's page (%d) lacks its progress (audience 3, sent 3):\n%s", resp.StatusCode, page)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if csrf == nil {
		t.Fatal("no CSRF token on the broadcast's page")
	}
	resp, err = dash.PostForm(base+"/dashboard/broadcasts/flash", url.Values{"csrf": {string(csrf[1])}, "action": {"dry-run"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "It would reach 3 contacts now") || !strings.Contains(string(page), "<li>retention: 3</li>") {
		t.Fatalf("the dashboard's dry run: %d\n%s", resp.StatusCode, page)
	}
	resp, err = dash.PostForm(base+"/dashboard/broadcasts/flash", url.Values{"csrf": {string(csrf[1])}, "action": {"pause"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `<small id="broadcast-state">paused</small>`) {
		t.Fatalf("paused from the dashboard: %d\n%s", resp.StatusCode, page)
	}
	call("POST", "/api/v1/broadcasts/flash/resume", "")
	// Created from the dashboard's form: refused with the field's
	// mistake, then made; edited from its page.
	form := url.Values{"csrf": {string(csrf[1])}, "name": {"weekly"}, "template": {"news"}, "stages": {"retention"}, "segment": {"vip"},
		"send_at": {"2999-01-04T09:00"}, "variant": {"subject: Monday news", "subject: This week", "", ""}, "test.share": {"1.5"}, "pick_by": {"opens"}, "after": {"2h"}}
	resp, err = dash.PostForm(base+"/dashboard/broadcasts", form)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(page), "test.share: the part of the audience the variants are tried on") || !strings.Contains(string(page), `value="subject: This week"`) {
		t.Fatalf("a wrong share from the form: %d\n%s", resp.StatusCode, page)
	}
	form.Set("test.share", "0.3")
	resp, err = dash.PostForm(base+"/dashboard/broadcasts", form)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != "/dashboard/broadcasts/weekly" || !strings.Contains(string(page), "A/B test on 30% of the audience, the winner by opens") {
		t.Fatalf("created from the form: at %s\n%s", resp.Request.URL.Path, page)
	}
	form.Set("edit", "true")
	form.Set("throttle", "25")
	resp, err = dash.PostForm(base+"/dashboard/broadcasts", form)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "at most 25 emails a second") {
		t.Fatalf("edited from the form:\n%s", page)
	}
	if code, p := call("GET", "/api/v1/broadcasts/weekly", ""); code != 200 || p["broadcast"].(map[string]any)["throttle"] != float64(25) || p["broadcast"].(map[string]any)["state"] != "scheduled" {
		t.Fatalf("the broadcast made on the dashboard: %d %v", code, p)
	}
	// Steering: pause, resume (not paused again: 409), cancel.
	if code, p := call("POST", "/api/v1/broadcasts/flash/pause", ""); code != 200 || p["broadcast"].(map[string]any)["state"] != "paused" {
		t.Fatalf("pause: %d %v", code, p)
	}
	if code, _ := call("POST", "/api/v1/broadcasts/flash/resume", ""); code != 200 {
		t.Fatalf("resume: %d", code)
	}
	if code, _ := call("POST", "/api/v1/broadcasts/flash/resume", ""); code != 409 {
		t.Fatalf("resume when not paused: %d, want 409", code)
	}
	if code, p := call("POST", "/api/v1/broadcasts/flash/cancel", `{"reason":"done with it"}`); code != 200 || p["broadcast"].(map[string]any)["state_reason"] != "done with it" {
		t.Fatalf("cancel: %d %v", code, p)
	}
	if code, _ := call("PUT", "/api/v1/broadcasts/flash", `{"template":"news-b"}`); code != 409 {
		t.Fatalf("editing a cancelled broadcast: %d, want 409", code)
	}
	if code, p := call("GET", "/api/v1/broadcasts", ""); code != 200 || len(p["items"].([]any)) != 2 {
		t.Fatalf("list: %d %v", code, p)
	}
	if smtp.Count() != 4 {
		t.Fatalf("%d emails, want the test and the three", smtp.Count())
	}
	// A journey that drops the segment an API broadcast sends to is
	// refused, nothing saved.
	noVIP := writeFile(t, "journey.yaml", strings.Replace(broadcastAPIJourney, "segments:\n  - name: vip\n    when: sum(\"order_completed\", \"revenue\", \"365d\") >= 500\n", "", 1))
	if _, _, err := runWaymark(t, pool.Config().ConnString(), "apply", "-f", noVIP); err == nil ||
		!strings.Contains(err.Error(), "the journey removes segments that broadcasts created through the API send to: vip (broadcast weekly)") {
		t.Fatalf("apply without vip: %v", err)
	}
	if one(t, pool, `SELECT count(*)::text FROM segments`) != "1" {
		t.Fatal("the refused apply removed the segment")
	}
}
