package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/web"
	"github.com/waymark/waymark/lifecycle"
)

const testJourney = `rules:
  - {name: visitor, from: [awareness], to: consideration, when: 'count("page_viewed", "all") >= 1'}
  - {name: shopper, from: [consideration], to: decision, when: 'ever("cart_updated")'}
  - {name: lapsed, from: [decision], to: consideration, when: 'ever("cart_abandoned")'}
tones:
  - {tone: empathetic, when: 'count("support_ticket_opened", "14d") > 0'}
  - tone: friendly
templates:
  - name: welcome
    subject: 'Hi {{.Contact.FirstName | default "there"}}'
    text: 'Welcome to Fernwood.'
    tones:
      empathetic: {subject: 'We are here for you, {{.Contact.FirstName | default "there"}}'}
`

// fixture is a database with a journey, three contacts who moved, an
// email sent and opened, rollups refreshed, and the API and dashboard
// served over HTTP.
type fixture struct {
	pool  *pgxpool.Pool
	st    *store.Store
	web   *web.Server
	srv   *httptest.Server
	key   string
	ann   int64 // moved awareness → consideration → decision, got an email and opened it
	bob   int64 // awareness → consideration
	carol int64 // never moved
}

func newFixture(t *testing.T, cfg web.Config) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{pool: pgtest.Pool(t)}
	f.st = store.New(f.pool)
	j, err := journey.Parse("test.yaml", []byte(testJourney))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.ApplyJourney(ctx, j, false); err != nil {
		t.Fatal(err)
	}
	now := clock.Now().UTC()
	msg := func(user, kind, name, email string, at time.Duration) ingest.Message {
		m := ingest.Message{Kind: kind, UserID: user, MessageID: user + name, Name: name, Properties: json.RawMessage(`{"path":"/tents"}`), Timestamp: now.Add(-at)}
		if kind == ingest.KindIdentify {
			m.Traits = json.RawMessage(`{"name":"` + strings.ToUpper(user[:1]) + user[1:] + `"}`)
			m.Properties = m.Traits
			m.Email = email
		}
		return m
	}
	if _, err := f.st.Ingest(ctx, []ingest.Message{
		msg("ann", ingest.KindIdentify, "identify", "ann@example.com", 3*time.Hour),
		msg("ann", ingest.KindPage, "page_viewed", "", 2*time.Hour),
		msg("ann", ingest.KindTrack, "cart_updated", "", time.Hour),
		msg("bob", ingest.KindIdentify, "identify", "bob@example.com", 3*time.Hour),
		msg("bob", ingest.KindPage, "page_viewed", "", 2*time.Hour),
		msg("carol", ingest.KindIdentify, "identify", "carol@example.com", 3*time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		email string
		id    *int64
	}{{"ann@example.com", &f.ann}, {"bob@example.com", &f.bob}, {"carol@example.com", &f.carol}} {
		if *c.id, err = f.st.ContactRef(ctx, c.email); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if _, err := lifecycle.NewEngine(f.st, log).Sweep(ctx, now); err != nil {
		t.Fatal(err)
	}
	// One email to Ann, sent and opened twice.
	var sendID int64
	if err := f.pool.QueryRow(ctx, `INSERT INTO sends (contact_id, sequence, step, template, template_version, status, due_at, sent_at, tone, tone_reason)
		VALUES ($1, 'welcome', 0, 'welcome', 1, 'sent', $2, $2, 'friendly', 'default') RETURNING id`, f.ann, now.Add(-30*time.Minute)).Scan(&sendID); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		// As tracking records an open: an internal event naming the send.
		if _, err := f.pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
			VALUES ($1, $2, 'internal', 'email_opened', jsonb_build_object('send_id', $3::bigint, 'sequence', 'welcome', 'step', 0, 'template', 'welcome'), $4)`,
			f.ann, fmt.Sprintf("open-%d", i), sendID, now.Add(-time.Duration(20-i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if f.key, err = f.st.CreateAPIKey(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Log = f.st, log
	f.web = web.New(cfg)
	if err := f.web.Refresh(ctx, false); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.web.Mount(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// call makes an API request with the fixture's key (key "" for none) and
// decodes the JSON answer.
func (f *fixture) call(t *testing.T, method, path, key, body string, out any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
