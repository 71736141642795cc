package tracking_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/waymark/waymark/internal/store"
)

// apiKey creates, once, a management API key for the fixture's database.
func (f *fixture) apiKey() string {
	f.t.Helper()
	if f.key == "" {
		k, err := store.New(f.db).CreateAPIKey(context.Background(), "suppressions")
		if err != nil {
			f.t.Fatal(err)
		}
		f.key = k
	}
	return f.key
}

// Issue 23, item 2: the ingestion write key, which clients ship inside
// browser and app code, let anyone suppress any address, and the answer's
// "cancelled" told whether mail was queued to it. The suppression API and
// the bounce webhook take a management API key now, refuse the write key
// and read-only keys, and say nothing about queued mail.
func TestSuppressionsNeedAnAPIKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ro, err := store.New(f.db).CreateAPIKeyWith(context.Background(), "viewer", true)
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]string{
		"/v1/suppressions":     `{"email":"` + f.email + `","reason":"complaint"}`,
		"/v1/webhooks/bounces": `{"type":"complaint","email":"` + f.email + `"}`,
	}
	for path, b := range body {
		for _, c := range []struct {
			name   string
			auth   func(r *http.Request)
			code   int
			saying string
		}{
			{"the write key as Basic user name", func(r *http.Request) { r.SetBasicAuth("wk", "") }, 401, "write key cannot suppress"},
			{"the write key as a bearer key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wk") }, 401, "write key cannot suppress"},
			{"no key", func(*http.Request) {}, 401, "missing API key"},
			{"an unknown key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wmk_nope_nope") }, 401, "invalid or revoked"},
			{"a read-only key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+ro) }, 403, "read-only"},
		} {
			r := httptest.NewRequest("POST", path, strings.NewReader(b))
			c.auth(r)
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, r)
			if w.Code != c.code || !strings.Contains(w.Body.String(), c.saying) {
				t.Errorf("%s with %s: %d %s, want %d saying %q", path, c.name, w.Code, w.Body, c.code, c.saying)
			}
		}
	}
	if got := f.state(); got != untouched {
		t.Fatalf("after refused requests: %s", got)
	}
	// A management key as the Basic password, as a provider's webhook
	// URL carries it (https://:KEY@host/v1/webhooks/bounces).
	r := httptest.NewRequest("POST", "/v1/webhooks/bounces", strings.NewReader(body["/v1/webhooks/bounces"]))
	r.SetBasicAuth("", f.apiKey())
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != 200 || strings.Contains(w.Body.String(), "cancelled") {
		t.Fatalf("with a management key: %d %s, want 200 saying nothing of queued mail", w.Code, w.Body)
	}
	if got, want := f.state(), "subscribed | complaint | cancelled/complaint | exited/suppressed: complaint"; got != want {
		t.Errorf("%s, want %s", got, want)
	}
}
