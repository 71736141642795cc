package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestSegmentClientLibrary drives the real @segment/analytics-node library
// (installed from npm into testdata/segment by .ci/run) against the server
// through a proxy that forwards every request but answers the first few
// with a 502, so the client retries batches that were in fact stored: every
// event must still be stored exactly once.
func TestSegmentClientLibrary(t *testing.T) {
	t.Parallel()
	dir, _ := filepath.Abs("testdata/segment")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@segment", "analytics-node")); err != nil {
		msg := "the Segment client library is not installed: run `npm ci` in internal/ingest/testdata/segment (.ci/run does)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed")
	}
	srv, pool := newServer(t)
	target, _ := url.Parse(srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var requests, lied atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if n > 3 {
			proxy.ServeHTTP(w, r)
			return
		}
		// Store it, then pretend the gateway failed.
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			lied.Add(1)
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer front.Close()

	const n = 47
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", front.URL, writeKey, strconv.Itoa(n))
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, stderr.String())
	}
	var report struct{ Sent, Failed int }
	if err := json.Unmarshal(bytes.TrimSpace(out), &report); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if report.Failed != 0 {
		t.Fatalf("client reported %d failures: %s", report.Failed, stderr.String())
	}
	if lied.Load() == 0 {
		t.Fatal("no stored batch was answered with an error: the retry path was not exercised")
	}

	var events, distinct, contacts int
	var email, plan string
	var revenue float64
	db := pool
	_ = db.QueryRow(ctx, "SELECT count(*), count(DISTINCT message_id) FROM events").Scan(&events, &distinct)
	_ = db.QueryRow(ctx, "SELECT count(*) FROM contacts WHERE merged_into IS NULL").Scan(&contacts)
	_ = db.QueryRow(ctx, `SELECT c.email, c.traits->>'plan', (SELECT sum((properties->>'revenue')::numeric) FROM events WHERE contact_id = c.id AND name = 'order_completed')
		FROM identities i JOIN contacts c ON c.id = i.contact_id WHERE i.identity = 'u:seg-user-1'`).Scan(&email, &plan, &revenue)
	if events != n+3 || distinct != events {
		t.Fatalf("%d events (%d distinct) stored after %d requests (%d retried after being stored), want %d once each", events, distinct, requests.Load(), lied.Load(), n+3)
	}
	if contacts != 1 || email != "sam@example.com" || plan != "free" || revenue != float64(10*n) {
		t.Fatalf("contacts %d, email %q, plan %q, revenue %v", contacts, email, plan, revenue)
	}
}
