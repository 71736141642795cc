package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/waymark/waymark/internal/web"
)

// The webhooks page shows each endpoint's health, figures and last error,
// and the latest deliveries; "send test event" queues a webhook.test
// delivery (with the CSRF token; without it, nothing).
func TestDashboardWebhooksPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	ctx := context.Background()
	if _, err := f.pool.Exec(ctx, `INSERT INTO webhook_endpoints (name, url, events, secret_env, failing_since) VALUES
		('crm', 'https://crm.example.com/hooks', '{stage_changed,unsubscribed}', 'CRM_SECRET', NULL),
		('warehouse', 'https://dw.example.com/in', '{email_sent}', 'DW_SECRET', '2026-01-02 03:04:00+00')`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `INSERT INTO webhook_outbox (endpoint, type, body, status, attempts, last_status, last_error, latency_ms) VALUES
		('crm', 'stage_changed', '{}', 'delivered', 2, 200, 'HTTP 503: busy', 12.5),
		('warehouse', 'email_sent', '{}', 'pending', 3, 500, 'HTTP 500: oops', 80)`); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(f.srv.URL+"/dashboard/login", url.Values{"key": {f.key}, "next": {"/dashboard/webhooks"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	for _, want := range []string{"<h2>crm <span class=\"ok\">healthy</span>", "failing since 2026-01-02 03:04:00 UTC", "stage_changed, unsubscribed",
		"last error: <span class=\"err\">HTTP 500: oops</span>", "<td>stage_changed</td><td>delivered</td><td class=\"num\">2</td>", "12.5 ms"} {
		if !strings.Contains(page, want) {
			t.Errorf("the webhooks page lacks %q", want)
		}
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if csrf == nil {
		t.Fatal("no CSRF token on the page")
	}
	tests := func() int {
		var n int
		_ = f.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_outbox WHERE type = 'webhook.test' AND endpoint = 'crm'`).Scan(&n)
		return n
	}
	resp, _ = c.PostForm(f.srv.URL+"/dashboard/webhooks/crm/test", url.Values{})
	resp.Body.Close()
	if resp.StatusCode != 403 || tests() != 0 {
		t.Errorf("test event without the CSRF token: %d, %d queued; want 403 and none", resp.StatusCode, tests())
	}
	resp, _ = c.PostForm(f.srv.URL+"/dashboard/webhooks/crm/test", url.Values{"csrf": {csrf[1]}})
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/dashboard/webhooks" || tests() != 1 {
		t.Errorf("send test event: %d at %s, %d queued; want back on the page with one queued", resp.StatusCode, resp.Request.URL.Path, tests())
	}
}
