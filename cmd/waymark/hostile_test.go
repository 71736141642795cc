package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/smtptest"
)

// postWithKey posts body to base+path with a management API key, as the
// suppression endpoints and the bounce webhook need, and returns the
// status.
func postWithKey(t *testing.T, base, path, key, body string) int {
	t.Helper()
	code, _ := requestWithKey(t, "POST", base+path, key, body)
	return code
}

// requestWithKey calls url with a management API key and returns the
// status and the body.
func requestWithKey(t *testing.T, method, url, key, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// poisonServeJourney moves a buyer to consideration and a big spender
// (sum() over revenue, as DESIGN.md's VIP segment) to decision, mails
// every big spender at once, and holds mail on another sum().
const poisonServeJourney = `rules:
  - {name: buyer, from: [awareness], to: consideration, when: 'count("order_completed", "30d") >= 1'}
  - {name: vip, from: [consideration], to: decision, when: 'sum("order_completed", "revenue", "365d") >= 500'}
sequences:
  - name: vip-welcome
    trigger: {enter_stage: decision}
    steps:
      - {after: 0h, template: vip}
holds:
  - {name: whale, when: 'sum("order_completed", "revenue", "30d") > 1000000000'}
sending:
  frequency_cap: {max: 100, per: 1d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: vip, subject: "Thank you", text: "You are one of our best customers."}
`

// Issue 23, done when: serve keeps ingesting and evaluating thousands of
// contacts while poisoned events arrive — numbers no float8 holds, NaN-like
// strings, deep and huge traits, invalid UTF-8, and events stored before
// ingestion refused 1e400 — and every healthy contact still moves and is
// mailed on time (its one email sent at its first attempt, never held or
// parked). Before the fix, one 1e400 revenue stopped every stage move.
func TestFaultPoisonedEventsNeverStopTheEngine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	smtp := smtptest.Start(t)
	base, pool := startServeWith(t, poisonServeJourney, map[string]string{
		"WAYMARK_SMTP_URL": "smtp://" + smtp.Addr() + "?tls=none&pool=8",
		"WAYMARK_FROM":     "shop@example.com",
		"WAYMARK_CRON":     "@every 2s", // sweeps run meanwhile, over the poison too
	})
	const healthy, legacy, perBatch = 2000, 50, 50
	post := func(entries []string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/v1/batch", strings.NewReader(`{"batch":[`+strings.Join(entries, ",")+`]}`))
		req.SetBasicAuth("wk", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 && resp.StatusCode != 400 {
			t.Errorf("batch: %d %v", resp.StatusCode, out)
		}
		return out
	}
	// Everyone known first, with an address; some healthy contacts then
	// get an order whose revenue is 1e400, stored as it was before
	// ingestion refused it.
	for lo := 0; lo < healthy; lo += 500 {
		var es []string
		for i := lo; i < lo+500; i++ {
			es = append(es, fmt.Sprintf(`{"type":"identify","userId":"h%d","traits":{"email":"h%d@example.com"}}`, i, i))
		}
		post(es)
	}
	for i := range legacy {
		if _, err := pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
			SELECT contact_id, 'legacy', 'track', 'order_completed', '{"revenue": 1e400}', $2 FROM identities WHERE identity = $1`,
			fmt.Sprint("u:h", i), clock.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	huge := strings.Repeat("x", 30<<10)
	nines := strings.Repeat("9", 400)
	poison := []struct {
		entry  string
		stored bool
	}{
		{`{"type":"track","userId":"p%d","event":"order_completed","properties":{"revenue":1e400}}`, false},
		{`{"type":"track","userId":"p%d","event":"order_completed","properties":{"revenue":` + nines + `}}`, false},
		{`{"type":"track","userId":"p%d","event":"order_completed","properties":{"revenue":"` + nines + `"}}`, true},
		{`{"type":"track","userId":"p%d","event":"order_completed","properties":{"revenue":"NaN"}}`, true},
		{`{"type":"track","userId":"p%d","event":"order_completed","properties":{"revenue":"-Infinity","tiny":1e-400}}`, false},
		{`{"type":"identify","userId":"p%d","traits":` + deep + `}`, false},
		{`{"type":"identify","userId":"p0","traits":{"k%d":"` + huge + `"}}`, true}, // the first two fit; then refused
		{"{\"type\":\"track\",\"userId\":\"p%d\",\"event\":\"order_completed\xff\"}", false},
		{`{"type":"track","userId":"p%d","event":"order_completed","properties":{"note":"a\u0000b"}}`, true},
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := w * perBatch; lo < healthy; lo += 4 * perBatch {
				var es []string
				for i := lo; i < lo+perBatch; i++ {
					es = append(es, fmt.Sprintf(`{"type":"track","userId":"h%d","event":"order_completed","properties":{"revenue":600}}`, i))
					p := poison[i%len(poison)]
					es = append(es, fmt.Sprintf(p.entry, i))
				}
				out := post(es)
				if a, _ := out["accepted"].(float64); out["success"] != true && a < perBatch {
					t.Errorf("batch at %d: %v, want every healthy order accepted", lo, out)
				}
			}
		}()
	}
	wg.Wait()

	for deadline := time.Now().Add(90 * time.Second); smtp.Count() < healthy && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if got := smtp.Messages(); len(got) < healthy {
		// Say where the rest are (the test failed once, in CI, this way).
		var why []string
		rows, err := pool.Query(ctx, `SELECT 'sends ' || status || ': ' || coalesce(delayed_reason, '') || ' ×' || count(*) FROM sends GROUP BY status, delayed_reason
			UNION ALL SELECT 'parked: ' || reason || ' ×' || count(*) FROM parked_contacts GROUP BY reason
			UNION ALL SELECT 'healthy contacts by stage: ' || c.stage || ' ×' || count(*) FROM contacts c JOIN identities i ON i.contact_id = c.id WHERE i.identity LIKE 'u:h%' GROUP BY c.stage
			UNION ALL SELECT 'enrolments ' || status || ' ×' || count(*) FROM enrolments GROUP BY status`)
		if err == nil {
			for rows.Next() {
				var line string
				if rows.Scan(&line) == nil {
					why = append(why, line)
				}
			}
			rows.Close()
		}
		t.Fatalf("%d of %d big spenders mailed; the database says:\n%s", len(got), healthy, strings.Join(why, "\n"))
	}
	if n := queryInt(t, pool, `SELECT count(*) FROM contacts c JOIN identities i ON i.contact_id = c.id
		WHERE i.identity LIKE 'u:h%' AND c.stage = 'decision'`); n != healthy {
		t.Errorf("%d of %d healthy contacts in decision", n, healthy)
	}
	// The server has them; their outcome is recorded just after.
	sentAtOnce := `SELECT count(*) FROM sends s JOIN identities i ON i.contact_id = s.contact_id
		WHERE i.identity LIKE 'u:h%' AND s.status = 'sent' AND s.attempts <= 1 AND s.delayed_reason IS NULL`
	n := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n = queryInt(t, pool, sentAtOnce); n == healthy {
			break
		}
	}
	if n != healthy {
		t.Errorf("%d of %d healthy contacts' emails sent at once, never held", n, healthy)
	}
	if n := queryInt(t, pool, `SELECT count(*) FROM parked_contacts`); n != 0 {
		t.Errorf("%d contacts parked: no poisoned event should make anyone's evaluation fail", n)
	}
	if n := queryInt(t, pool, `SELECT count(*) FROM sends WHERE status <> 'sent'`); n != 0 {
		t.Errorf("%d sends not sent", n)
	}
}
