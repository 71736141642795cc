package web_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/web"
)

type apiErr struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

func TestAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	ctx := context.Background()

	t.Run("needs a key", func(t *testing.T) {
		for _, key := range []string{"", "wmk_000000000000_" + strings.Repeat("0", 48), f.key + "x"} {
			var e apiErr
			resp := f.call(t, "GET", "/api/v1/contacts", key, "", &e)
			if resp.StatusCode != http.StatusUnauthorized || e.Field != "Authorization" {
				t.Errorf("key %q: %d %+v, want 401 naming Authorization", key, resp.StatusCode, e)
			}
		}
	})

	t.Run("stats match the database", func(t *testing.T) {
		var o struct {
			Stages []struct {
				Stage    string
				Contacts int64
			}
			Flows []struct {
				From, To string
				N        int64 `json:"moves"`
			}
			EmailTotal struct{ Sent, Opened, Clicked, Unsubscribed int64 } `json:"email_total"`
		}
		if resp := f.call(t, "GET", "/api/v1/stats", f.key, "", &o); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		got := map[string]int64{}
		for _, s := range o.Stages {
			got[s.Stage] = s.Contacts
		}
		rows, _ := f.pool.Query(ctx, `SELECT stage, count(*) FROM contacts WHERE merged_into IS NULL GROUP BY stage`)
		want := map[string]int64{}
		for rows.Next() {
			var s string
			var n int64
			_ = rows.Scan(&s, &n)
			want[s] = n
		}
		if fmt.Sprint(got) != fmt.Sprint(map[string]int64{"awareness": 1, "consideration": 1, "decision": 1, "retention": 0, "advocacy": 0}) || want["decision"] != 1 || want["awareness"] != 1 {
			t.Errorf("stages %v, database %v", got, want)
		}
		flows := map[string]int64{}
		for _, fl := range o.Flows {
			flows[fl.From+">"+fl.To] = fl.N
		}
		if fmt.Sprint(flows) != "map[awareness>consideration:2 consideration>decision:1]" {
			t.Errorf("flows %v, want awareness>consideration 2 (ann, bob), consideration>decision 1 (ann)", flows)
		}
		if o.EmailTotal.Sent != 1 || o.EmailTotal.Opened != 1 || o.EmailTotal.Clicked != 0 {
			t.Errorf("email totals %+v, want 1 sent, 1 opened (two opens of one send)", o.EmailTotal)
		}
	})

	t.Run("contacts: search, pages, sort", func(t *testing.T) {
		var p struct {
			Items []struct {
				ID    int64
				Email string
			}
			Next string
		}
		f.call(t, "GET", "/api/v1/contacts?email=ANN@example.com", f.key, "", &p)
		if len(p.Items) != 1 || p.Items[0].ID != f.ann {
			t.Fatalf("search by email: %+v, want ann (%d)", p, f.ann)
		}
		p.Items = nil
		f.call(t, "GET", "/api/v1/contacts?id="+strconv.FormatInt(f.bob, 10), f.key, "", &p)
		if len(p.Items) != 1 || p.Items[0].Email != "bob@example.com" {
			t.Fatalf("search by id: %+v", p)
		}
		var ids []int64
		next := ""
		for page := 0; page < 5; page++ {
			p.Items, p.Next = nil, ""
			f.call(t, "GET", "/api/v1/contacts?sort=-created_at&limit=2&after="+next, f.key, "", &p)
			for _, c := range p.Items {
				ids = append(ids, c.ID)
			}
			if next = p.Next; next == "" {
				break
			}
		}
		if len(ids) != 3 {
			t.Fatalf("paging 2 at a time: %v, want the 3 contacts once each", ids)
		}
		for _, bad := range []struct{ q, field string }{
			{"sort=email", "sort"}, {"sort=id%20desc", "sort"}, {"limit=0", "limit"}, {"limit=501", "limit"}, {"after=xyz", "after"}, {"stage=lead", "stage"}, {"id=-1", "id"},
		} {
			var e apiErr
			resp := f.call(t, "GET", "/api/v1/contacts?"+bad.q, f.key, "", &e)
			if resp.StatusCode != 400 || e.Field != bad.field {
				t.Errorf("?%s: %d %+v, want 400 naming %s", bad.q, resp.StatusCode, e, bad.field)
			}
		}
		var e apiErr
		if resp := f.call(t, "GET", "/api/v1/contacts/999999999", f.key, "", &e); resp.StatusCode != 404 {
			t.Errorf("unknown contact: %d", resp.StatusCode)
		}
	})

	t.Run("timeline", func(t *testing.T) {
		var tl struct {
			Moves []struct{ From, To, Rule string }
			Sends []struct {
				Template, Tone, Status string
				Opens                  int64
			}
			EventsTotal int64 `json:"events_total"`
		}
		f.call(t, "GET", fmt.Sprintf("/api/v1/contacts/%d/timeline", f.ann), f.key, "", &tl)
		if len(tl.Moves) != 2 || tl.Moves[0].Rule != "visitor" || tl.Moves[1].To != "decision" {
			t.Errorf("moves %+v", tl.Moves)
		}
		if len(tl.Sends) != 1 || tl.Sends[0].Opens != 2 || tl.Sends[0].Tone != "friendly" || tl.Sends[0].Status != "sent" {
			t.Errorf("sends %+v", tl.Sends)
		}
		if tl.EventsTotal != 5 { // identify, page, cart, 2 opens
			t.Errorf("events_total %d, want 5", tl.EventsTotal)
		}
	})

	t.Run("rules: compile errors name the field and position, saving bumps the version", func(t *testing.T) {
		var e apiErr
		resp := f.call(t, "PUT", "/api/v1/rules/visitor", f.key, `{"from":["awareness"],"to":"consideration","when":"count(\"page_viewed\", \"all\") >= "}`, &e)
		if resp.StatusCode != 400 || e.Field != "when" || !strings.Contains(e.Error, "line 1, column") {
			t.Errorf("bad condition: %d %+v", resp.StatusCode, e)
		}
		resp = f.call(t, "PUT", "/api/v1/rules/visitor", f.key, `{"from":["awareness"],"to":"nowhere","when":"true"}`, &e)
		if resp.StatusCode != 400 || e.Field != "to" {
			t.Errorf("bad stage: %d %+v", resp.StatusCode, e)
		}
		resp = f.call(t, "PUT", "/api/v1/rules/visitor", f.key, `{"from":["awareness"],"to":"consideration","when":"true","extra":1}`, &e)
		if resp.StatusCode != 400 || e.Field != "extra" {
			t.Errorf("unknown field: %d %+v", resp.StatusCode, e)
		}
		var dr struct {
			Summary string
			Effects []struct {
				From, To string
				Contacts int
			}
		}
		f.call(t, "POST", "/api/v1/rules/visitor/dry-run", f.key, `{"from":["awareness"],"to":"consideration","when":"true"}`, &dr)
		if len(dr.Effects) != 1 || dr.Effects[0].Contacts != 1 || dr.Summary != "would move 1 contacts from awareness to consideration" {
			t.Errorf("dry run: %+v, want carol moved", dr)
		}
		var saved struct {
			Rule   struct{ Version int }
			Change string
		}
		f.call(t, "PUT", "/api/v1/rules/visitor", f.key, `{"from":["awareness"],"to":"consideration","when":"count(\"page_viewed\", \"all\") >= 2"}`, &saved)
		var v int
		var cond string
		if err := f.pool.QueryRow(ctx, `SELECT version, condition FROM rules WHERE name = 'visitor'`).Scan(&v, &cond); err != nil {
			t.Fatal(err)
		}
		if saved.Rule.Version != 2 || v != 2 || saved.Change != "changed" || cond != `count("page_viewed", "all") >= 2` {
			t.Errorf("saved %+v; database version %d %q", saved, v, cond)
		}
	})

	t.Run("preview in the tone chosen", func(t *testing.T) {
		var p struct{ Subject, Tone string }
		f.call(t, "GET", "/api/v1/templates/welcome/preview?contact=ann@example.com", f.key, "", &p)
		if p.Subject != "Hi Ann" || p.Tone != "friendly" {
			t.Errorf("preview %+v", p)
		}
		f.call(t, "GET", "/api/v1/templates/welcome/preview?contact=ann@example.com&tone=empathetic", f.key, "", &p)
		if p.Subject != "We are here for you, Ann" {
			t.Errorf("pinned preview %+v", p)
		}
		var e apiErr
		if resp := f.call(t, "GET", "/api/v1/templates/welcome/preview?contact=ann@example.com&tone=angry", f.key, "", &e); resp.StatusCode != 400 || e.Field != "tone" {
			t.Errorf("unknown tone: %d %+v", resp.StatusCode, e)
		}
		if resp := f.call(t, "GET", "/api/v1/templates/welcome/preview?contact=nobody", f.key, "", &e); resp.StatusCode != 404 || e.Field != "contact" {
			t.Errorf("unknown contact: %d %+v", resp.StatusCode, e)
		}
	})

	t.Run("suppressions", func(t *testing.T) {
		var e apiErr
		if resp := f.call(t, "POST", "/api/v1/suppressions", f.key, `{"email":"not an address"}`, &e); resp.StatusCode != 400 || e.Field != "email" {
			t.Errorf("bad email: %d %+v", resp.StatusCode, e)
		}
		if resp := f.call(t, "POST", "/api/v1/suppressions", f.key, `{"email":"Carol@example.com"}`, nil); resp.StatusCode != 201 {
			t.Errorf("suppress: %d", resp.StatusCode)
		}
		var p struct {
			Items []struct{ Email, Reason string }
		}
		f.call(t, "GET", "/api/v1/suppressions?sort=email", f.key, "", &p)
		if len(p.Items) != 1 || p.Items[0].Email != "carol@example.com" || p.Items[0].Reason != "manual" {
			t.Errorf("list %+v", p)
		}
		if resp := f.call(t, "DELETE", "/api/v1/suppressions/carol@example.com", f.key, "", nil); resp.StatusCode != 204 {
			t.Errorf("unsuppress: %d", resp.StatusCode)
		}
	})

	t.Run("body limit", func(t *testing.T) {
		big := `{"when":"` + strings.Repeat("x", 2<<20) + `"}`
		var e apiErr
		if resp := f.call(t, "POST", "/api/v1/compile", f.key, big, &e); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("2 MiB body: %d %+v, want 413", resp.StatusCode, e)
		}
	})

	t.Run("read-only keys only read", func(t *testing.T) {
		ro, err := f.st.CreateAPIKeyWith(ctx, "reader", true)
		if err != nil {
			t.Fatal(err)
		}
		if resp := f.call(t, "GET", "/api/v1/rules", ro, "", nil); resp.StatusCode != 200 {
			t.Errorf("read-only GET: %d", resp.StatusCode)
		}
		if resp := f.call(t, "PUT", "/api/v1/rules/visitor", ro, `{"from":["awareness"],"to":"consideration","when":"true"}`, nil); resp.StatusCode != 403 {
			t.Errorf("read-only PUT: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("revoked keys stop at once", func(t *testing.T) {
		k, err := f.st.CreateAPIKey(ctx, "short-lived")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.RevokeAPIKey(ctx, "short-lived"); err != nil {
			t.Fatal(err)
		}
		if resp := f.call(t, "GET", "/api/v1/rules", k, "", nil); resp.StatusCode != 401 {
			t.Errorf("revoked key: %d", resp.StatusCode)
		}
	})
}

// A key over its rate gets 429 with Retry-After; another key is not
// affected.
func TestRateLimitPerKey(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, web.Config{RatePerSecond: 0.5, Burst: 2, Now: func() time.Time { return clock }})
	other, err := f.st.CreateAPIKey(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if resp := f.call(t, "GET", "/api/v1/tones", f.key, "", nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i+1, resp.StatusCode)
		}
	}
	var e apiErr
	resp := f.call(t, "GET", "/api/v1/tones", f.key, "", &e)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("third request: %d Retry-After %q, want 429 and 3 (one token per 2 s)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := f.call(t, "GET", "/api/v1/tones", other, "", nil); resp.StatusCode != 200 {
		t.Errorf("another key: %d", resp.StatusCode)
	}
}
