package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/waymark/waymark/internal/web"
)

// login returns a client with a dashboard session for the fixture's key,
// and the CSRF token of its forms.
func login(t *testing.T, f *fixture) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(f.srv.URL+"/dashboard/login", url.Values{"key": {f.key}, "next": {"/dashboard/rules/visitor"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("login: %d, no CSRF token in the rule editor", resp.StatusCode)
	}
	return c, string(m[1])
}

func status(t *testing.T, c *http.Client, method, u string, form url.Values) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Issue 23, item 6: a NUL character or invalid UTF-8 in a query parameter,
// the path or a JSON field answered 500 (PostgreSQL refused it); now 400
// naming the field, and nothing is logged as an error.
func TestNotTextIsRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	for _, c := range []struct{ method, path, body, field string }{
		{"GET", "/api/v1/contacts?email=a%00b", "", "email"},
		{"GET", "/api/v1/contacts?email=%ff%fe", "", "email"},
		{"GET", "/api/v1/templates/welcome/preview?contact=a%00b", "", "contact"},
		{"DELETE", "/api/v1/suppressions/a%00b", "", "path"},
		{"POST", "/api/v1/suppressions", `{"email":"dee@example.com","detail":"a\u0000b"}`, "detail"},
		{"POST", "/api/v1/compile", `{"when":"true\u0000"}`, "when"},
	} {
		var e struct{ Error, Field string }
		resp := f.call(t, c.method, c.path, f.key, c.body, &e)
		if resp.StatusCode != 400 || e.Field != c.field {
			t.Errorf("%s %s: %d %+v, want 400 naming %s", c.method, c.path, resp.StatusCode, e, c.field)
		}
	}
	c, _ := login(t, f)
	for _, p := range []string{"/dashboard/contacts?q=%ff", "/dashboard/contacts?q=a%00b"} {
		if code, body := status(t, c, "GET", f.srv.URL+p, nil); code != 400 || !strings.Contains(body, "q: not valid text") {
			t.Errorf("%s: %d, want 400 naming q", p, code)
		}
	}
}

// Issue 23, item 8: /dashboard/static/ listed its directory.
func TestStaticFilesAreNotListed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	for path, want := range map[string]int{"/dashboard/static/": 404, "/dashboard/static/style.css": 200} {
		if code, _ := status(t, http.DefaultClient, "GET", f.srv.URL+path, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}

// Issue 23, item 3: the dashboard took 60 parallel dry runs where the API
// answered 429. A session counts against its key's rate limit as the key's
// API calls do, and dry runs (every contact evaluated) run one at a time:
// another asked for meanwhile is answered 429 with Retry-After, by the API
// and the dashboard alike.
func TestDashboardActionsAreRateLimited(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{RatePerSecond: 1, Burst: 5})
	c, csrf := login(t, f) // takes one token
	limited := 0
	for range 10 {
		if code, _ := status(t, c, "GET", f.srv.URL+"/dashboard/contacts", nil); code == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Fatalf("10 dashboard pages at once with a burst of 5: none refused")
	}

	g := newFixture(t, web.Config{})
	c, csrf = login(t, g)
	release := web.HoldDryRun(g.web)
	form := url.Values{"csrf": {csrf}, "from": {"awareness"}, "to": {"consideration"}, "when": {`count("page_viewed", "all") >= 1`}, "action": {"dry-run"}}
	req, _ := http.NewRequest("POST", g.srv.URL+"/dashboard/rules/visitor", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", g.srv.URL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a dashboard dry run while one runs: %d, want 429 with Retry-After", resp.StatusCode)
	}
	if resp := g.call(t, "POST", "/api/v1/rules/visitor/dry-run", g.key, "", nil); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("an API dry run while one runs: %d, want 429 with Retry-After", resp.StatusCode)
	}
	release()
	var res struct{ Summary string }
	if resp := g.call(t, "POST", "/api/v1/rules/visitor/dry-run", g.key, "", &res); resp.StatusCode != 200 || res.Summary == "" {
		t.Errorf("a dry run once the other ended: %d %+v", resp.StatusCode, res)
	}
}

// A parked contact (its evaluation failed) says so, with the reason, in the
// API and on its dashboard page.
func TestParkedContactShowsWhy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	if _, err := f.pool.Exec(context.Background(), `INSERT INTO parked_contacts (contact_id, reason, since) VALUES ($1, 'loading its facts: boom', now())`, f.bob); err != nil {
		t.Fatal(err)
	}
	var a struct {
		ID     int64
		Parked *struct{ Reason string }
	}
	f.call(t, "GET", "/api/v1/contacts/"+strconv.FormatInt(f.bob, 10), f.key, "", &a)
	if a.ID != f.bob || a.Parked == nil || a.Parked.Reason != "loading its facts: boom" {
		t.Errorf("API: %+v, want bob parked with the reason", a)
	}
	a.Parked = nil
	f.call(t, "GET", "/api/v1/contacts/"+strconv.FormatInt(f.ann, 10), f.key, "", &a)
	if a.Parked != nil {
		t.Errorf("ann is not parked: %+v", a.Parked)
	}
	c, _ := login(t, f)
	if code, body := status(t, c, "GET", f.srv.URL+"/dashboard/contacts/"+strconv.FormatInt(f.bob, 10), nil); code != 200 || !strings.Contains(body, `id="parked"`) || !strings.Contains(body, "boom") {
		t.Errorf("bob's page: %d, want the parking and its reason", code)
	}
}
