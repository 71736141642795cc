package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/web"
)

// Every page renders for a logged-in key and shows what the database
// holds; a state-changing form without the CSRF token is refused.
func TestDashboardPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{CapturedMail: func(context.Context) ([]web.Mail, error) {
		return []web.Mail{{ID: "m1", From: "shop@example.com", To: []string{"ann@example.com"}, Subject: "Welcome, Ann", Date: time.Now(), Text: "Hello Ann", HTML: "<p>Hello <b>Ann</b></p>"}}, nil
	}})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(path string) (int, string) {
		resp, err := c.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/dashboard/health"); code != 200 || !strings.Contains(body, `name="key"`) {
		t.Fatalf("not logged in: %d, want the login form", code)
	}
	resp, err := c.PostForm(f.srv.URL+"/dashboard/login", url.Values{"key": {f.key}, "next": {"/dashboard/health"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/dashboard/health" {
		t.Fatalf("after login at %s, want /dashboard/health", resp.Request.URL.Path)
	}
	for _, p := range []struct{ path, want string }{
		{"/dashboard/health", `<tr data-stage="awareness">`},
		{"/dashboard/health?from=2026-01-01&to=2026-02-01&base_from=2025-12-01&base_to=2026-01-01", "2025-12-01"},
		{"/dashboard/sequences", "<td>welcome</td><td class=\"num\">1</td><td>welcome</td><td>friendly</td><td class=\"num\">1</td>"},
		{"/dashboard/contacts", "ann@example.com"},
		{"/dashboard/contacts?stage=decision", "ann@example.com"},
		{"/dashboard/rules", `<a href="/dashboard/rules/shopper">shopper</a>`},
		{"/dashboard/mail", "Welcome, Ann"},
	} {
		code, body := get(p.path)
		if code != 200 || !strings.Contains(body, p.want) {
			t.Errorf("%s: %d, want 200 containing %q", p.path, code, p.want)
		}
	}
	if code, body := get("/dashboard/contacts?stage=decision"); strings.Contains(body, "bob@example.com") || code != 200 {
		t.Errorf("stage filter shows bob (in consideration)")
	}
	if code, _ := get("/dashboard/health?from=yesterday"); code != 400 {
		t.Errorf("bad date: %d, want 400", code)
	}
	if code, _ := get("/dashboard/contacts/999999999"); code != 404 {
		t.Errorf("unknown contact: %d, want 404", code)
	}
	// A form posted without the CSRF token changes nothing.
	resp, err = c.PostForm(f.srv.URL+"/dashboard/rules/visitor", url.Values{"from": {"awareness"}, "to": {"consideration"}, "when": {"true"}, "action": {"save"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var v int
	if err := f.pool.QueryRow(context.Background(), `SELECT version FROM rules WHERE name = 'visitor'`).Scan(&v); err != nil || resp.StatusCode != 403 || v != 1 {
		t.Errorf("save without CSRF token: %d, rule version %d (%v); want 403 and version 1", resp.StatusCode, v, err)
	}
}
