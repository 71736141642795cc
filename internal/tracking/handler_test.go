package tracking_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/tracking"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

var sentAt = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

const chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"

type fixture struct {
	t       *testing.T
	db      store.DB
	signer  *tracking.Signer
	h       *tracking.Handler
	now     time.Time
	contact int64
	enrol   int64
	sent    int64 // a sent email: welcome step 0
	queued  int64 // the next step, queued
	email   string
	events  []string
	key     string // a management API key, once apiKey made it
}

// fixtureN numbers fixtures so each has its own address: the suppressions
// table is keyed by address, and two uncommitted test transactions
// inserting the same one would wait on each other until the test ends.
var fixtureN atomic.Int64

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := pgtest.Tx(t)
	signer, err := tracking.NewSigner("a-test-secret-of-enough-length")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, db: db, signer: signer, now: sentAt.Add(time.Hour)}
	f.h = tracking.NewHandler(signer, store.New(db), tracking.Options{
		WriteKey: "wk", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return f.now },
		OnEvent: func(_ int64, name string, _ map[string]any, _ time.Time) { f.events = append(f.events, name) },
	})
	f.email = fmt.Sprintf("ann.%d@example.com", fixtureN.Add(1))
	f.contact, f.enrol, f.sent, f.queued = seed(t, db, f.email)
	return f
}

// seed inserts a contact enrolled in "welcome", its sent first email and
// its queued second one.
func seed(t *testing.T, db store.DB, email string) (contact, enrolment, sent, queued int64) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.QueryRow(ctx, `INSERT INTO contacts (id, email) VALUES (nextval('contact_id_seq'), $1) RETURNING id`, email).Scan(&contact))
	must(db.QueryRow(ctx, `INSERT INTO enrolments (contact_id, sequence, version, enrolled_at) VALUES ($1, 'welcome', 1, $2) RETURNING id`, contact, sentAt).Scan(&enrolment))
	must(db.QueryRow(ctx, `INSERT INTO sends (contact_id, enrolment_id, sequence, step, template, due_at, status, sent_at)
		VALUES ($1, $2, 'welcome', 0, 'welcome-1', $3, 'sent', $3) RETURNING id`, contact, enrolment, sentAt).Scan(&sent))
	must(db.QueryRow(ctx, `INSERT INTO sends (contact_id, enrolment_id, sequence, step, template, due_at)
		VALUES ($1, $2, 'welcome', 1, 'welcome-2', $3) RETURNING id`, contact, enrolment, sentAt.Add(48*time.Hour)).Scan(&queued))
	return
}

func (f *fixture) token(k tracking.Kind, target string, expires time.Time) string {
	return f.signer.Sign(tracking.Token{Kind: k, ContactID: f.contact, SendID: f.sent, URL: target, Expires: expires})
}

func (f *fixture) do(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("User-Agent", chrome)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f *fixture) query(sql string, args ...any) string {
	f.t.Helper()
	var s string
	if err := f.db.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// state is the contact's status, its suppression, the queued send and the
// enrolment, as one comparable line.
func (f *fixture) state() string {
	return f.query(`SELECT concat_ws(' | ',
		(SELECT status FROM contacts WHERE id = $1),
		coalesce((SELECT reason FROM suppressions WHERE email = $4), 'not suppressed'),
		(SELECT status || '/' || coalesce(delayed_reason, '') FROM sends WHERE contact_id = $1 AND id = $2),
		(SELECT status || '/' || coalesce(reason, '') FROM enrolments WHERE contact_id = $1 AND id = $3))`, f.contact, f.queued, f.enrol, f.email)
}

const (
	untouched    = "subscribed | not suppressed | queued/ | active/"
	unsubscribed = "unsubscribed | unsubscribed | cancelled/unsubscribed | exited/unsubscribed"
)

// eventsOf lists the contact's events as "name {properties}", oldest first.
func (f *fixture) eventsOf() string {
	return f.query(`SELECT coalesce(string_agg(name || ' ' || properties::text, E'\n' ORDER BY occurred_at, name), '') FROM events WHERE contact_id = $1`, f.contact)
}

func TestUnsubscribeGETDoesNotUnsubscribe(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	path := "/u/" + f.token(tracking.Unsubscribe, "", f.now.Add(time.Hour))
	for _, m := range []string{"GET", "HEAD"} {
		w := f.do(m, path, "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", m, w.Code, w.Body)
		}
	}
	w := f.do("GET", path, "")
	body := w.Body.String()
	for _, want := range []string{f.email, `<form method="post">`, `<button type="submit">Unsubscribe</button>`, `href="../preferences/`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page has no %q:\n%s", want, body)
		}
	}
	if got := f.state(); got != untouched {
		t.Errorf("after GET: %s, want %s", got, untouched)
	}
	if ev := f.eventsOf(); ev != "" {
		t.Errorf("events after GET: %s", ev)
	}
}

func TestUnsubscribeOneClickPOST(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	path := "/u/" + f.token(tracking.Unsubscribe, "", f.now.Add(time.Hour))
	for i := 0; i < 2; i++ { // mailbox providers may POST twice
		w := f.do("POST", path, "List-Unsubscribe=One-Click", "Content-Type", "application/x-www-form-urlencoded")
		if w.Code != http.StatusOK {
			t.Fatalf("POST %d: %d %s", i, w.Code, w.Body)
		}
		if len(w.Result().Cookies()) != 0 {
			t.Error("the unsubscribe answer sets cookies")
		}
	}
	if got := f.state(); got != unsubscribed {
		t.Errorf("after POST: %s, want %s", got, unsubscribed)
	}
	want := `unsubscribed {"step": 0, "send_id": ` + itoa(f.sent) + `, "sequence": "welcome", "template": "welcome-1"}`
	if got := f.eventsOf(); got != want {
		t.Errorf("events:\n%s\nwant\n%s", got, want)
	}
	if got := f.query(`SELECT kind FROM events WHERE contact_id = $1`, f.contact); got != "internal" {
		t.Errorf("event kind %q", got)
	}
	// An empty body (a client that ignores the form) unsubscribes too.
	g := newFixture(t)
	if w := g.do("POST", "/u/"+g.token(tracking.Unsubscribe, "", g.now.Add(time.Hour)), ""); w.Code != http.StatusOK {
		t.Fatalf("POST without body: %d", w.Code)
	}
	if got := g.state(); got != unsubscribed {
		t.Errorf("after POST without body: %s", got)
	}
}

func itoa(i int64) string { b, _ := json.Marshal(i); return string(b) }

func TestUnsubscribeRefusesBadTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := f.token(tracking.Unsubscribe, "", f.now.Add(time.Hour))
	flipped := []byte(good)
	flipped[5] ^= 0x01
	if flipped[5] == '_' || flipped[5] == '-' || flipped[5] < '0' {
		flipped[5] = 'A'
	}
	other := f.signer.Sign(tracking.Token{Kind: tracking.Unsubscribe, ContactID: f.contact + 1, SendID: f.sent, Expires: f.now.Add(time.Hour)})
	for _, tc := range []struct {
		name, tok string
		code      int
		says      string
	}{
		{"tampered", string(flipped), 400, "This link is not valid"},
		{"open token", f.token(tracking.Open, "", f.now.Add(time.Hour)), 400, "made for another page"},
		{"expired", f.token(tracking.Unsubscribe, "", f.now), 403, "expired"},
		{"other contact's MAC", other[:len(other)-22] + good[len(good)-22:], 400, "This link is not valid"},
	} {
		for _, m := range []string{"GET", "POST"} {
			w := f.do(m, "/u/"+tc.tok, "List-Unsubscribe=One-Click")
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.says) {
				t.Errorf("%s %s: %d, want %d saying %q:\n%s", m, tc.name, w.Code, tc.code, tc.says, w.Body)
			}
		}
	}
	if got := f.state(); got != untouched {
		t.Errorf("after refused tokens: %s", got)
	}
}

func TestPreferencesUnsubscribeAndResubscribe(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.token(tracking.Preferences, "", f.now.Add(time.Hour))
	path := "/preferences/" + tok
	form := "application/x-www-form-urlencoded"
	csrf := f.signer.FormToken(tok)

	w := f.do("GET", path, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `<input type="hidden" name="action" value="unsubscribe"><input type="hidden" name="form_token" value="`+csrf+`"><button type="submit">Unsubscribe from all</button>`) {
		t.Fatalf("GET: %d\n%s", w.Code, w.Body)
	}
	if got := f.state(); got != untouched {
		t.Errorf("after GET: %s", got)
	}
	// Without the page's form token, with another link's, or sent by a
	// browser from another site: refused, nothing changes.
	other := f.signer.FormToken(f.token(tracking.Preferences, "", f.now.Add(2*time.Hour)))
	for _, tc := range []struct {
		name, body string
		hdr        []string
	}{
		{"no form token", "action=unsubscribe", nil},
		{"another link's form token", "action=unsubscribe&form_token=" + other, nil},
		{"cross-site", "action=unsubscribe&form_token=" + csrf, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		w := f.do("POST", path, tc.body, append([]string{"Content-Type", form}, tc.hdr...)...)
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403\n%s", tc.name, w.Code, w.Body)
		}
	}
	if got := f.state(); got != untouched {
		t.Fatalf("after refused forms: %s", got)
	}
	w = f.do("POST", path, "action=unsubscribe&form_token="+csrf, "Content-Type", form, "Sec-Fetch-Site", "same-origin")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "?done=1" {
		t.Fatalf("POST unsubscribe: %d %q", w.Code, w.Header().Get("Location"))
	}
	if got := f.state(); got != unsubscribed {
		t.Errorf("after unsubscribe: %s", got)
	}
	w = f.do("GET", path+"?done=1", "")
	if !strings.Contains(w.Body.String(), `value="resubscribe"><input type="hidden" name="form_token" value="`+csrf+`"><button type="submit">Resubscribe</button>`) {
		t.Fatalf("GET after unsubscribing offers no resubscribe:\n%s", w.Body)
	}
	w = f.do("POST", path, "action=resubscribe&form_token="+csrf, "Content-Type", form)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("POST resubscribe: %d %s", w.Code, w.Body)
	}
	// Subscribed, no suppression; what unsubscribing cancelled stays cancelled.
	if got, want := f.state(), "subscribed | not suppressed | cancelled/unsubscribed | exited/unsubscribed"; got != want {
		t.Errorf("after resubscribe: %s, want %s", got, want)
	}
	if got := strings.Join(f.events, ","); got != "unsubscribed,resubscribed" {
		t.Errorf("OnEvent saw %s", got)
	}
	if w := f.do("POST", path, "action=delete&form_token="+csrf, "Content-Type", form); w.Code != 400 {
		t.Errorf("unknown action: %d", w.Code)
	}
	// An unsubscribe token does not open the preferences page.
	utok := f.token(tracking.Unsubscribe, "", f.now.Add(time.Hour))
	if w := f.do("POST", "/preferences/"+utok, "action=unsubscribe&form_token="+f.signer.FormToken(utok), "Content-Type", form); w.Code != 400 {
		t.Errorf("unsubscribe token on preferences: %d", w.Code)
	}
	if got := f.query(`SELECT status FROM contacts WHERE id = $1`, f.contact); got != "subscribed" {
		t.Errorf("status %s", got)
	}
}

func TestResubscribeKeepsHardBounce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.db.Exec(ctx, `UPDATE contacts SET status = 'unsubscribed' WHERE id = $1; `, f.contact); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(ctx, `INSERT INTO suppressions (email, reason) VALUES ($1, 'hard_bounce')`, f.email); err != nil {
		t.Fatal(err)
	}
	tok := f.token(tracking.Preferences, "", f.now.Add(time.Hour))
	if w := f.do("POST", "/preferences/"+tok, "action=resubscribe&form_token="+f.signer.FormToken(tok), "Content-Type", "application/x-www-form-urlencoded"); w.Code != http.StatusSeeOther {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if got, want := f.state(), "subscribed | hard_bounce | queued/ | active/"; got != want {
		t.Errorf("%s, want %s", got, want)
	}
	if w := f.do("GET", "/preferences/"+tok, ""); !strings.Contains(w.Body.String(), "is subscribed, but we do not send to it: an earlier email to it could not be delivered") {
		t.Errorf("the page does not say the address is still blocked:\n%s", w.Body)
	}
}

func TestOpenPixel(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	path := "/o/" + f.token(tracking.Open, "", f.now.Add(time.Hour))
	w := f.do("GET", path, "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "image/gif" || !strings.Contains(w.Header().Get("Cache-Control"), "no-store") {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	if b := w.Body.Bytes(); !bytes.HasPrefix(b, []byte("GIF89a\x01\x00\x01\x00")) || b[len(b)-1] != ';' {
		t.Errorf("not a 1x1 GIF: %q", b)
	}
	// The same pixel fetched 2 s after sending, by a proxy at delivery.
	f.now = sentAt.Add(2 * time.Second)
	if w := f.do("GET", path, ""); w.Code != 200 {
		t.Fatalf("%d", w.Code)
	}
	want := `email_opened_machine {"step": 0, "machine": true, "send_id": ` + itoa(f.sent) + `, "sequence": "welcome", "template": "welcome-1", "user_agent": "` + chrome + `", "machine_reason": "within 10s of sending"}` + "\n" +
		`email_opened {"step": 0, "send_id": ` + itoa(f.sent) + `, "sequence": "welcome", "template": "welcome-1", "user_agent": "` + chrome + `"}`
	if got := f.eventsOf(); got != want {
		t.Errorf("events:\n%s\nwant\n%s", got, want)
	}
	if got := strings.Join(f.events, ","); got != "email_opened,email_opened_machine" {
		t.Errorf("OnEvent saw %s", got)
	}
	// Bad and expired tokens record nothing.
	if w := f.do("GET", "/o/"+f.token(tracking.Click, "https://example.com/", f.now.Add(time.Hour)), ""); w.Code != 400 {
		t.Errorf("click token on /o/: %d", w.Code)
	}
	if w := f.do("GET", "/o/"+f.token(tracking.Open, "", f.now), ""); w.Code != 200 || w.Header().Get("Content-Type") != "image/gif" {
		t.Errorf("expired pixel: %d", w.Code)
	}
	if n := f.query(`SELECT count(*)::text FROM events WHERE contact_id = $1`, f.contact); n != "2" {
		t.Errorf("%s events, want 2", n)
	}
}

func TestClickRedirect(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	target := "https://shop.example.com/sale?a=1&b=2"
	tok := f.token(tracking.Click, target, f.now.Add(time.Hour))
	w := f.do("GET", "/c/"+tok, "")
	if w.Code != http.StatusFound || w.Header().Get("Location") != target {
		t.Fatalf("%d Location %q, want 302 to %q", w.Code, w.Header().Get("Location"), target)
	}
	want := `email_clicked {"url": "` + target + `", "step": 0, "send_id": ` + itoa(f.sent) + `, "sequence": "welcome", "template": "welcome-1", "user_agent": "` + chrome + `"}`
	if got := f.eventsOf(); got != want {
		t.Errorf("events:\n%s\nwant\n%s", got, want)
	}
	// A scanner's HEAD is a machine click, and still redirects.
	if w := f.do("HEAD", "/c/"+tok, ""); w.Code != http.StatusFound {
		t.Fatalf("HEAD: %d", w.Code)
	}
	if got := f.query(`SELECT string_agg(name, ',' ORDER BY name) FROM events WHERE contact_id = $1`, f.contact); got != "email_clicked,email_clicked_machine" {
		t.Errorf("events %s", got)
	}
	// A token whose URL was swapped is refused, and goes nowhere.
	evil := f.token(tracking.Click, "https://evil.example.net/x?a=1&b=2", f.now.Add(time.Hour))
	swapped := evil[:len(evil)-22] + tok[len(tok)-22:]
	w = f.do("GET", "/c/"+swapped, "")
	if w.Code != 400 || w.Header().Get("Location") != "" {
		t.Errorf("swapped URL: %d Location %q", w.Code, w.Header().Get("Location"))
	}
	// An expired click still goes where it says, unrecorded.
	w = f.do("GET", "/c/"+f.token(tracking.Click, target, f.now), "")
	if w.Code != http.StatusFound || w.Header().Get("Location") != target {
		t.Errorf("expired click: %d %q", w.Code, w.Header().Get("Location"))
	}
	if n := f.query(`SELECT count(*)::text FROM events WHERE contact_id = $1`, f.contact); n != "2" {
		t.Errorf("%s events, want 2", n)
	}
}

func (f *fixture) api(path, body string, auth bool) (int, map[string]any) {
	f.t.Helper()
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if auth {
		r.Header.Set("Authorization", "Bearer "+f.apiKey())
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		f.t.Fatalf("%s: not JSON: %q", path, w.Body)
	}
	return w.Code, out
}

func TestSuppressionAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name, body string
		auth       bool
		code       int
		field      string
	}{
		{"no key", `{"email":"ann@example.com"}`, false, 401, "Authorization"},
		{"bad email", `{"email":"ann","reason":"manual"}`, true, 400, "email"},
		{"no email", `{"reason":"manual"}`, true, 400, "email"},
		{"bad reason", `{"email":"ann@example.com","reason":"unsubscribed"}`, true, 400, "reason"},
		{"unknown field", `{"email":"ann@example.com","why":"x"}`, true, 400, "why"},
		{"wrong type", `{"email":["ann@example.com"]}`, true, 400, "email"},
		{"malformed", `{"email":`, true, 400, "body"},
		{"NUL in detail", `{"email":"ann@example.com","detail":"a\u0000b"}`, true, 400, "detail"},
	} {
		code, out := f.api("/v1/suppressions", strings.ReplaceAll(tc.body, "ann@example.com", f.email), tc.auth)
		if code != tc.code || out["field"] != tc.field || out["error"] == "" {
			t.Errorf("%s: %d %v, want %d naming %q", tc.name, code, out, tc.code, tc.field)
		}
	}
	if got := f.state(); got != untouched {
		t.Fatalf("after refused requests: %s", got)
	}
	code, out := f.api("/v1/suppressions", `{"email":" `+strings.ToUpper(f.email)+` ","reason":"complaint","detail":"phoned support"}`, true)
	if _, told := out["cancelled"]; code != 200 || told || out["success"] != true {
		t.Fatalf("%d %v, want 200 without saying whether mail was queued", code, out)
	}
	if got, want := f.state(), "subscribed | complaint | cancelled/complaint | exited/suppressed: complaint"; got != want {
		t.Errorf("%s, want %s", got, want)
	}
	if got := f.query(`SELECT detail FROM suppressions WHERE email = $1`, f.email); got != "phoned support" {
		t.Errorf("detail %q", got)
	}
}

func TestBounceWebhook(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name, body string
		code       int
		field      string
	}{
		{"no type", `{"email":"ann@example.com"}`, 400, "type"},
		{"bad type", `{"type":"delivered","email":"ann@example.com"}`, 400, "type"},
		{"bad email", `{"type":"complaint","email":"nobody"}`, 400, "email"},
		{"no bounce type", `{"type":"bounce","email":"ann@example.com"}`, 400, "bounce_type"},
		{"bad bounce type", `{"type":"bounce","email":"ann@example.com","bounce_type":"medium"}`, 400, "bounce_type"},
		{"NUL in diagnostic", `{"type":"complaint","email":"ann@example.com","diagnostic":"a\u0000b"}`, 400, "diagnostic"},
	} {
		code, out := f.api("/v1/webhooks/bounces", strings.ReplaceAll(tc.body, "ann@example.com", f.email), true)
		if code != tc.code || out["field"] != tc.field {
			t.Errorf("%s: %d %v, want %d naming %q", tc.name, code, out, tc.code, tc.field)
		}
	}
	code, out := f.api("/v1/webhooks/bounces", `{"type":"bounce","email":"`+f.email+`","bounce_type":"soft","diagnostic":"452 mailbox full"}`, true)
	if code != 200 || out["suppressed"] != false {
		t.Fatalf("soft bounce: %d %v", code, out)
	}
	if got := f.state(); got != untouched {
		t.Fatalf("after a soft bounce: %s", got)
	}
	code, out = f.api("/v1/webhooks/bounces", `{"type":"bounce","email":"`+f.email+`","bounce_type":"hard","diagnostic":"550 5.1.1 no such user"}`, true)
	if _, told := out["cancelled"]; code != 200 || out["suppressed"] != true || told {
		t.Fatalf("hard bounce: %d %v", code, out)
	}
	if got, want := f.state(), "subscribed | hard_bounce | cancelled/hard_bounce | exited/suppressed: hard_bounce"; got != want {
		t.Errorf("%s, want %s", got, want)
	}
	bob := "bob." + f.email
	if code, _ := f.api("/v1/webhooks/bounces", `{"type":"complaint","email":"`+bob+`","diagnostic":"abuse report"}`, false); code != 401 {
		t.Errorf("without a key: %d", code)
	}
	code, out = f.api("/v1/webhooks/bounces", `{"type":"complaint","email":"`+bob+`","diagnostic":"abuse report"}`, true)
	if _, told := out["cancelled"]; code != 200 || told {
		t.Fatalf("complaint: %d %v", code, out)
	}
	if got := f.query(`SELECT reason FROM suppressions WHERE email = $1`, bob); got != "complaint" {
		t.Errorf("bob: %s", got)
	}
}

var _ = url.Values{}

// TestMachineHitsLeftOutOfCount: what the rule language counts, read by
// the store's facts query as the lifecycle engine and the sender read it.
// Machine opens and clicks are stored under their own names, so
// count("email_opened", ...) counts people, and a rule that wants the
// machines asks for email_opened_machine.
func TestMachineHitsLeftOutOfCount(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	open := "/o/" + f.token(tracking.Open, "", sentAt.Add(24*time.Hour))
	click := "/c/" + f.token(tracking.Click, "https://shop.example.com/", sentAt.Add(24*time.Hour))
	f.now = sentAt.Add(2 * time.Second) // at delivery: a privacy proxy and a link scanner
	f.do("GET", open, "")
	f.do("GET", click, "")
	f.now = sentAt.Add(time.Hour)
	f.do("GET", open, "", "User-Agent", "Mozilla/5.0") // Apple Mail Privacy Protection
	f.do("HEAD", click, "")                            // a scanner's probe
	f.do("GET", open, "")                              // the person reads it
	f.do("GET", click, "")                             // and clicks

	prog, err := rule.Compile(`count("email_opened", "14d") == 1 && count("email_opened_machine", "14d") == 2 && `+
		`count("email_clicked", "14d") == 1 && count("email_clicked_machine", "14d") == 2 && ever("email_opened")`, rule.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	facts, err := store.New(f.db).LoadFacts(context.Background(), lifecycle.FactsQuery{IDs: []int64{f.contact}, AsOf: f.now, Needs: prog.Aggregates})
	if err != nil || len(facts) != 1 {
		t.Fatalf("LoadFacts: %d, %v", len(facts), err)
	}
	var got []string
	for _, a := range prog.Aggregates {
		got = append(got, fmt.Sprintf("%s=%v", a, facts[0].Values[a]))
	}
	if ok, err := prog.Eval(&facts[0].Facts); !ok || err != nil {
		t.Errorf("the rule is %v (%v); values: %s", ok, err, strings.Join(got, ", "))
	}
	if n := f.query(`SELECT count(*)::text FROM events WHERE contact_id = $1 AND name LIKE '%_machine' AND properties->'machine' = 'true'`, f.contact); n != "4" {
		t.Errorf("%s machine events flagged machine: true, want 4", n)
	}
}

// A one-click POST for a contact that has been erased since the email
// was sent still answers 200: the address is suppressed for good.
func TestUnsubscribeErasedContact(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.signer.Sign(tracking.Token{Kind: tracking.Unsubscribe, ContactID: f.contact + 1000000, SendID: 1, Expires: f.now.Add(time.Hour)})
	w := f.do("POST", "/u/"+tok, "List-Unsubscribe=One-Click")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "no longer have this address") {
		t.Errorf("%d\n%s", w.Code, w.Body)
	}
	if len(f.events) != 0 {
		t.Errorf("OnEvent saw %v", f.events)
	}
}

// A batch of webhook events keeps its good entries and names the bad ones
// by index; a diagnostic over the limit is cut on a character boundary.
func TestBounceWebhookBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	long := strings.Repeat("x", 999) + "é and more" // é straddles byte 1000
	body := `[
		{"type":"complaint","email":"` + f.email + `","diagnostic":"` + long + `"},
		{"type":"bounce","email":"nobody","bounce_type":"hard"},
		{"type":"bounce","email":"soft.` + f.email + `","bounce_type":"soft"},
		{"type":"bounce","email":"hard.` + f.email + `","bounce_type":"hard","extra":1},
		{"type":"bounce","email":"hard.` + f.email + `","bounce_type":"hard"},
		"not an object"
	]`
	code, out := f.api("/v1/webhooks/bounces", body, true)
	rej, _ := json.Marshal(out["rejected"])
	wantRej := `[{"error":"\"nobody\" is not a valid email address","field":"[1].email","index":1},{"error":"unknown field","field":"[3].extra","index":3},{"error":"must be a JSON object, not string","field":"[5].body","index":5}]`
	if _, told := out["cancelled"]; code != 400 || out["accepted"] != 3.0 || out["suppressed"] != 2.0 || told || string(rej) != wantRej {
		t.Errorf("%d %v\nrejected %s\nwant     %s", code, out, rej, wantRej)
	}
	if got := f.query(`SELECT string_agg(email || ' ' || reason || ' ' || length(coalesce(detail, '')), ', ' ORDER BY email) FROM suppressions WHERE email LIKE '%' || $1`, f.email); got != f.email+" complaint 999, hard."+f.email+" hard_bounce 0" {
		t.Errorf("suppressions: %s", got)
	}
	if code, out := f.api("/v1/webhooks/bounces", `[{"type":"bounce","email":"`+f.email+`","bounce_type":"soft"}]`, true); code != 200 || out["success"] != true {
		t.Errorf("a good batch: %d %v", code, out)
	}
	if code, out := f.api("/v1/webhooks/bounces", `[{"type":"bounce"`, true); code != 400 || out["field"] != "body" {
		t.Errorf("malformed batch: %d %v", code, out)
	}
}
