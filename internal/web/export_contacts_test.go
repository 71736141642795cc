package web_test

import (
	"strings"
	"testing"

	"github.com/waymark/waymark/internal/web"
)

// The contacts page has an export button for the stage shown; it streams
// that stage's contacts to a logged-in session, and a logged-out one is
// sent to the login page.
func TestDashboardExportButton(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	c, _ := login(t, f)
	code, page := status(t, c, "GET", f.srv.URL+"/dashboard/contacts?stage=consideration", nil)
	if code != 200 || !strings.Contains(page, `href="/dashboard/contacts/export?stage=consideration&amp;format=csv"`) ||
		!strings.Contains(page, `href="/dashboard/contacts/export?stage=consideration&amp;format=jsonl"`) {
		t.Fatalf("contacts page: %d, no export buttons for the stage:\n%s", code, page)
	}
	code, body := status(t, c, "GET", f.srv.URL+"/dashboard/contacts/export?stage=consideration&format=csv", nil)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if code != 200 || len(lines) != 2 || lines[0] != "id,user_id,email,stage,since,status,traits,segments" || !strings.Contains(lines[1], ",bob,bob@example.com,consideration,") {
		t.Errorf("export of consideration: %d\n%s", code, body)
	}
	code, body = status(t, c, "GET", f.srv.URL+"/dashboard/contacts/export?format=jsonl", nil)
	if n := strings.Count(body, "\n"); code != 200 || n != 3 {
		t.Errorf("export of everyone: %d, %d lines\n%s", code, n, body)
	}
	if code, _ := status(t, c, "GET", f.srv.URL+"/dashboard/contacts/export?stage=nowhere", nil); code != 400 {
		t.Errorf("a bad stage: %d", code)
	}
	resp := f.call(t, "GET", "/dashboard/contacts/export", "", "", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.Path, "/dashboard/login") {
		t.Errorf("logged out: %d at %s", resp.StatusCode, resp.Request.URL)
	}
}
