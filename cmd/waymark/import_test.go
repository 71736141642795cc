package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgtest"
)

// runWaymark runs the command line as a user would, against databaseURL.
func runWaymark(t *testing.T, databaseURL string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return databaseURL
		}
		return ""
	}
	err = run(context.Background(), args, getenv, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportCSVAndJSONLines(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	contacts := writeFile(t, "contacts.csv", "userId,email,first_name,plan,zip\nu1,Ann@Example.com,Ann,pro,02134\nu2,bo@example.com,Bo,free,10001\nu3,not-an-email,Cy,free,1\n")
	events := writeFile(t, "events.csv", "userId,event,timestamp,revenue,sku\nu1,order_completed,2026-10-01T10:00:00Z,49.90,A-1\nu1,order_completed,2026-10-20T10:00:00Z,20,B-2\nu2,page_viewed,2026-11-01T08:00:00Z,,\nu2,order_completed,yesterday,5,C\n")
	jsonl := writeFile(t, "events.jsonl", `{"type":"track","userId":"u2","event":"cart_updated","messageId":"j1","timestamp":"2026-11-02T08:00:00Z"}
{"type":"track","event":"no ids"}

{"type":"identify","anonymousId":"anon-9","traits":{"name":"Dee"},"messageId":"j2"}
`)
	for round := 0; round < 2; round++ {
		out, errOut, err := runWaymark(t, url, "import", contacts)
		if err == nil || !strings.Contains(err.Error(), "1 line was rejected") {
			t.Fatalf("round %d: import of a file with a bad line: err = %v, want it to say 1 line was rejected", round, err)
		}
		if !strings.Contains(errOut, "line 4: traits.email:") {
			t.Errorf("round %d: bad contact line not reported with its line number: %q", round, errOut)
		}
		wantStored := map[int]string{0: "2 stored, 0 already there, 1 bad lines", 1: "0 stored, 2 already there, 1 bad lines"}[round]
		if !strings.Contains(out, wantStored) {
			t.Errorf("round %d: contacts import said %q, want %q", round, out, wantStored)
		}
		_, errOut, err = runWaymark(t, url, "import", events)
		if err == nil {
			t.Fatalf("round %d: import of events with a bad line exited 0", round)
		}
		if !strings.Contains(errOut, "line 5: timestamp:") {
			t.Errorf("round %d: bad event line not reported: %q", round, errOut)
		}
		_, errOut, err = runWaymark(t, url, "import", jsonl)
		if err == nil {
			t.Fatalf("round %d: import of jsonl with a bad line exited 0", round)
		}
		if !strings.Contains(errOut, "line 2: userId:") {
			t.Errorf("round %d: bad JSON line not reported: %q", round, errOut)
		}
	}

	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	var nEvents, nContacts int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&nEvents)
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM contacts").Scan(&nContacts)
	// 2 identify + 3 good CSV events + 2 good JSON lines, each once.
	if nEvents != 7 || nContacts != 3 {
		t.Fatalf("%d events and %d contacts, want 7 and 3", nEvents, nContacts)
	}
	var revenue float64
	var email, zip string
	_ = pool.QueryRow(ctx, `SELECT sum((properties->>'revenue')::numeric) FROM events e JOIN identities i ON i.contact_id = e.contact_id WHERE i.identity = 'u:u1' AND name = 'order_completed'`).Scan(&revenue)
	_ = pool.QueryRow(ctx, `SELECT c.email, c.traits->>'zip' FROM contacts c JOIN identities i ON i.contact_id = c.id WHERE i.identity = 'u:u1'`).Scan(&email, &zip)
	if revenue != 69.9 || email != "ann@example.com" || zip != "02134" {
		t.Fatalf("u1: revenue %v, email %q, zip %q", revenue, email, zip)
	}
}
