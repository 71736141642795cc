package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/waymark/waymark/internal/web"
)

// The API exports a contact's data and erases it: nothing personal is
// left, the address stays suppressed as a hash, and the contact is gone
// from the API afterwards.
func TestAPIExportAndErase(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	ctx := context.Background()
	path := "/api/v1/contacts/" + strconv.FormatInt(f.ann, 10)

	var export map[string]json.RawMessage
	if resp := f.call(t, "GET", path+"/export", f.key, "", &export); resp.StatusCode != 200 {
		t.Fatalf("export: %d", resp.StatusCode)
	}
	var contact struct {
		Email string `json:"email"`
	}
	if err := json.Unmarshal(export["contact"], &contact); err != nil || contact.Email != "ann@example.com" {
		t.Fatalf("export's contact %s (%v)", export["contact"], err)
	}
	if len(export["events"]) < 10 {
		t.Fatalf("export lacks ann's events: %s", export["events"])
	}

	var erased struct {
		Erased     int64 `json:"erased"`
		Suppressed bool  `json:"address_suppressed"`
	}
	if resp := f.call(t, "DELETE", path, f.key, "", &erased); resp.StatusCode != 200 || erased.Erased != f.ann || !erased.Suppressed {
		t.Fatalf("erase: %d %+v", resp.StatusCode, erased)
	}
	var left, events, hashed int
	_ = f.pool.QueryRow(ctx, `SELECT count(*) FROM contacts WHERE id = $1 OR email = 'ann@example.com'`, f.ann).Scan(&left)
	_ = f.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE contact_id = $1`, f.ann).Scan(&events)
	_ = f.pool.QueryRow(ctx, `SELECT count(*) FROM suppressions WHERE email LIKE 'sha256:%' AND reason = 'erased'`).Scan(&hashed)
	if left != 0 || events != 0 || hashed != 1 {
		t.Fatalf("after erase: %d contact rows, %d events, %d hashed suppressions", left, events, hashed)
	}
	var e apiErr
	if resp := f.call(t, "GET", path, f.key, "", &e); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("erased contact: %d, want 404", resp.StatusCode)
	}
	if resp := f.call(t, "DELETE", path, f.key, "", &e); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("erasing again: %d, want 404", resp.StatusCode)
	}
	// Bob is untouched.
	var bob int
	_ = f.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE contact_id = $1`, f.bob).Scan(&bob)
	if bob == 0 {
		t.Fatal("erasing ann removed bob's events")
	}
}
