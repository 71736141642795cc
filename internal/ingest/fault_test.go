package ingest_test

// PostgreSQL crashes (pg_ctl restart -m immediate) and goes away (stop -m
// immediate, then start) while /v1/track takes 500 requests a second. The
// server is a private one with its own data directory and port: the shared
// server other tests use is never touched.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/migrations"
)

// attempt is one request and its answer.
type attempt struct {
	event         int
	start, end    time.Time
	status        int // 0: no answer
	retryAfterSet bool
}

// Every event acknowledged with 200 is stored exactly once; while the
// database is down the API answers 503 (with Retry-After), never 200; it
// recovers on its own; clients retrying what got a 503 end with every
// event stored once.
func TestFaultPostgresRestartDuringIngestion(t *testing.T) {
	url, dataDir := pgtest.Private(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := migrations.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := ingest.NewWriter(store.New(pool), log, ingest.WriterOptions{})
	defer w.Close()
	srv := httptest.NewServer(ingest.NewHandler(writeKey, w, log, time.Now))
	defer srv.Close()
	client := &http.Client{Timeout: 40 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	const (
		rate  = 500 // requests a second, retries included
		users = 300
	)
	var (
		mu       sync.Mutex
		attempts []attempt
		pending  = make(chan int, 100000) // events to (re)send
		next     = 0
		acked    = map[int]bool{}
	)
	send := func(ev int) {
		a := attempt{event: ev, start: time.Now()}
		body := fmt.Sprintf(`{"userId":"user-%d","anonymousId":"anon-%d","event":"fault_test","messageId":"fault-%d","properties":{"n":%d}}`, ev%users, ev%users, ev, ev)
		req, _ := http.NewRequest("POST", srv.URL+"/v1/track", strings.NewReader(body))
		req.SetBasicAuth(writeKey, "")
		resp, err := client.Do(req)
		if err == nil {
			a.status = resp.StatusCode
			a.retryAfterSet = resp.Header.Get("Retry-After") != ""
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		a.end = time.Now()
		mu.Lock()
		attempts = append(attempts, a)
		if a.status == 200 {
			acked[ev] = true
		}
		mu.Unlock()
		if a.status != 200 {
			// The client retries later, as Segment's libraries do.
			time.AfterFunc(200*time.Millisecond, func() { pending <- ev })
		}
	}
	// 500 requests a second: new events, and retries first.
	stop := make(chan struct{})
	var senders sync.WaitGroup
	senders.Add(1)
	go func() {
		defer senders.Done()
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var ev int
			select {
			case ev = <-pending:
			default:
				ev = next
				next++
			}
			inflight.Add(1)
			go func() { defer inflight.Done(); send(ev) }()
		}
	}()
	okSince := func(since time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		for i := len(attempts) - 1; i >= 0; i-- {
			if attempts[i].start.After(since) && attempts[i].status == 200 {
				return true
			}
		}
		return false
	}
	waitRecovered := func(what string, since time.Time) time.Duration {
		deadline := time.Now().Add(30 * time.Second)
		for !okSince(since) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no request stored within 30s of PostgreSQL answering again", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(since)
	}

	time.Sleep(2 * time.Second)
	// 1. A crash and recovery.
	pgtest.PgCtl(t, dataDir, "restart", "-m", "immediate", "-w", "-t", "60")
	back := time.Now()
	t.Logf("crash and restart: first 200 %v after PostgreSQL was back", waitRecovered("after the crash", back).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	// 2. Down for two seconds.
	pgtest.PgCtl(t, dataDir, "stop", "-m", "immediate", "-w")
	downFrom := time.Now()
	time.Sleep(2 * time.Second)
	downTo := time.Now()
	pgtest.PgCtl(t, dataDir, "start", "-w", "-t", "60", "-o", "-c listen_addresses=127.0.0.1 -p "+strconv.Itoa(int(cfg.ConnConfig.Port))+" -k "+dataDir)
	back = time.Now()
	t.Logf("down 2s: first 200 %v after PostgreSQL was back", waitRecovered("after the outage", back).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	close(stop)
	senders.Wait()
	// Let the retries of the last failures through.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		missing := next - len(acked)
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events never acknowledged after the database came back", missing)
		}
		select {
		case ev := <-pending:
			send(ev)
		case <-time.After(50 * time.Millisecond):
		}
	}

	mu.Lock()
	defer mu.Unlock()
	statuses := map[int]int{}
	downAnswers := 0
	for _, a := range attempts {
		statuses[a.status]++
		if a.status != 200 && a.status != 503 {
			t.Errorf("event %d: status %d, want 200 or 503", a.event, a.status)
		}
		if a.status == 503 && !a.retryAfterSet {
			t.Errorf("event %d: 503 without Retry-After", a.event)
		}
		if a.start.After(downFrom) && a.end.Before(downTo) {
			downAnswers++
			if a.status != 503 {
				t.Errorf("event %d: status %d while the database was down, want 503", a.event, a.status)
			}
		}
	}
	if downAnswers == 0 {
		t.Error("no request was answered while the database was down")
	}
	if statuses[503] == 0 {
		t.Error("no 503 at all: the faults did not reach ingestion")
	}
	// Every event acknowledged is stored exactly once.
	rows, err := pool.Query(ctx, `SELECT message_id, count(*) FROM events WHERE name = 'fault_test' GROUP BY message_id`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		stored[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for ev := range acked {
		if n := stored["fault-"+strconv.Itoa(ev)]; n != 1 {
			t.Errorf("event %d acknowledged, stored %d times", ev, n)
		}
	}
	if len(stored) != len(acked) {
		t.Errorf("%d events stored, %d acknowledged", len(stored), len(acked))
	}
	t.Logf("%d events, %d requests (%v by status); %d answered while the database was down, all 503", next, len(attempts), statuses, downAnswers)
}
