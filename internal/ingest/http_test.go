package ingest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

const writeKey = "wk_test"

func newServer(t *testing.T) (*httptest.Server, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := ingest.NewWriter(store.New(pool), log, ingest.WriterOptions{Flushers: 2})
	t.Cleanup(w.Close)
	srv := httptest.NewServer(ingest.NewHandler(writeKey, w, log, time.Now))
	t.Cleanup(srv.Close)
	return srv, pool
}

type reply struct {
	status int
	body   map[string]any
}

func post(t *testing.T, srv *httptest.Server, path, key string, body []byte, headers ...string) reply {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r reply
	r.status = resp.StatusCode
	_ = json.NewDecoder(resp.Body).Decode(&r.body)
	return r
}

func events(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHTTPTrackStoresAndDeduplicates(t *testing.T) {
	t.Parallel()
	srv, pool := newServer(t)
	body := []byte(`{"userId":"u1","event":"order_completed","properties":{"revenue":20},"messageId":"abc"}`)
	for i := 0; i < 3; i++ {
		r := post(t, srv, "/v1/track", writeKey, body)
		if r.status != 200 || r.body["success"] != true {
			t.Fatalf("attempt %d: %d %v", i, r.status, r.body)
		}
	}
	if n := events(t, pool); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
	var name string
	var revenue float64
	if err := pool.QueryRow(context.Background(), "SELECT name, (properties->>'revenue')::float FROM events").Scan(&name, &revenue); err != nil {
		t.Fatal(err)
	}
	if name != "order_completed" || revenue != 20 {
		t.Fatalf("stored %s revenue %v", name, revenue)
	}
}

func TestHTTPBatchKeepsGoodEntries(t *testing.T) {
	t.Parallel()
	srv, pool := newServer(t)
	body := []byte(`{"batch":[
		{"type":"identify","userId":"u1","traits":{"email":"a@example.com"},"messageId":"1"},
		{"type":"track","event":"x","messageId":"2"},
		{"type":"track","userId":"u1","event":"page_viewed","messageId":"3"},
		{"type":"identify","userId":"u2","traits":{"email":"nope"},"messageId":"4"}
	],"sentAt":"2026-11-23T10:00:00Z"}`)
	r := post(t, srv, "/v1/batch", writeKey, body)
	if r.status != 400 {
		t.Fatalf("status %d, want 400", r.status)
	}
	rej, _ := r.body["rejected"].([]any)
	if len(rej) != 2 || r.body["accepted"] != float64(2) {
		t.Fatalf("body %v, want 2 accepted and 2 rejected", r.body)
	}
	first := rej[0].(map[string]any)
	second := rej[1].(map[string]any)
	if first["index"] != float64(1) || first["field"] != "batch[1].userId" || second["field"] != "batch[3].traits.email" {
		t.Fatalf("rejections %v", rej)
	}
	if n := events(t, pool); n != 2 {
		t.Fatalf("%d events stored, want the 2 good ones", n)
	}
}

func TestHTTPGzipBody(t *testing.T) {
	t.Parallel()
	srv, pool := newServer(t)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(`{"batch":[{"type":"page","anonymousId":"a1","name":"Home"}]}`))
	_ = zw.Close()
	// Whatever the Content-Type, as analytics-node sends it.
	r := post(t, srv, "/v1/batch", writeKey, buf.Bytes(), "Content-Encoding", "gzip", "Content-Type", "text/plain")
	if r.status != 200 {
		t.Fatalf("status %d %v", r.status, r.body)
	}
	if n := events(t, pool); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestHTTPRejections(t *testing.T) {
	t.Parallel()
	srv, pool := newServer(t)
	big := `{"batch":[` + strings.Repeat(`{"type":"track","userId":"u","event":"x","properties":{"p":"`+strings.Repeat("x", 1000)+`"}},`, 600) + `{}]}`
	tests := []struct {
		name, path, key, body string
		status                int
		field                 string
	}{
		{"wrong key", "/v1/track", "nope", `{"userId":"u","event":"x"}`, 401, "writeKey"},
		{"no key", "/v1/track", "", `{"userId":"u","event":"x"}`, 401, "writeKey"},
		{"malformed JSON", "/v1/track", writeKey, `{"userId":`, 400, ""},
		{"no id", "/v1/identify", writeKey, `{"traits":{}}`, 400, "userId"},
		{"batch not an array", "/v1/batch", writeKey, `{"batch":{}}`, 400, "body"},
		{"batch missing", "/v1/batch", writeKey, `{}`, 400, "batch"},
		{"body over 500 KB", "/v1/batch", writeKey, big, 413, "body"},
		{"deeply nested batch entry", "/v1/batch", writeKey, `{"batch":[{"type":"track","userId":"u","event":"x","properties":` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `}]}`, 400, ""}, // rejected alone: batch[0]
		{"deeply nested call", "/v1/track", writeKey, `{"userId":"u","event":"x","properties":{"a":` + strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100) + `}}`, 400, ""},
		{"number jsonb cannot store", "/v1/track", writeKey, `{"userId":"u","event":"x","properties":{"n":1e1000000}}`, 400, "properties.n"},
		{"NUL in the event name", "/v1/track", writeKey, `{"userId":"u","event":"x\u0000"}`, 400, "event"},
		{"event over 32 KB", "/v1/track", writeKey, `{"userId":"u","event":"x","properties":{"p":"` + strings.Repeat("x", 33<<10) + `"}}`, 413, "body"},
	}
	for _, tt := range tests {
		r := post(t, srv, tt.path, tt.key, []byte(tt.body))
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d (%v)", tt.name, r.status, tt.status, r.body)
			continue
		}
		if f, _ := r.body["field"].(string); f != tt.field {
			t.Errorf("%s: field %q, want %q", tt.name, f, tt.field)
		}
		if e, _ := r.body["error"].(string); e == "" {
			t.Errorf("%s: no error message", tt.name)
		}
	}
	if n := events(t, pool); n != 0 {
		t.Fatalf("%d events stored from bad requests", n)
	}
}

// A database outage answers 503, never a 200 for data not stored.
func TestHTTPDatabaseDownAnswers503(t *testing.T) {
	t.Parallel()
	srv, pool := newServer(t)
	if r := post(t, srv, "/v1/track", writeKey, []byte(`{"userId":"u","event":"x"}`)); r.status != 200 {
		t.Fatalf("healthy: %d", r.status)
	}
	// Take the database away under the running server.
	var db string
	_ = pool.QueryRow(context.Background(), "SELECT current_database()").Scan(&db)
	pool.Reset()
	admin, err := pgxpool.New(context.Background(), strings.Replace(pool.Config().ConnString(), "/"+db, "/postgres", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(context.Background(), "ALTER DATABASE "+db+" WITH ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", db); err != nil {
		t.Fatal(err)
	}
	r := post(t, srv, "/v1/track", writeKey, []byte(`{"userId":"u","event":"y"}`))
	if r.status != 503 {
		t.Fatalf("database down: status %d, want 503 (%v)", r.status, r.body)
	}
	if _, err := admin.Exec(context.Background(), "ALTER DATABASE "+db+" WITH ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
	if r := post(t, srv, "/v1/track", writeKey, []byte(`{"userId":"u","event":"z"}`)); r.status != 200 {
		t.Fatalf("after recovery: %d %v", r.status, r.body)
	}
	if n := events(t, pool); n != 2 {
		t.Fatalf("%d events, want 2 (the 503 one not stored)", n)
	}
}
