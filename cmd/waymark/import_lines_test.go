package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgtest"
)

// An import with a rejected line exits non-zero, stores the good lines, and
// a quote left open on one line does not take the next lines with it.
func TestImportRejectedLinesExitNonZero(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	events := writeFile(t, "events.csv", "userId,event,timestamp,note\n"+
		"u1,page_viewed,2026-10-01T10:00:00Z,a\n"+
		"u2,page_viewed,2026-10-01T10:00:00Z,b\n"+
		"u3,page_viewed,2026-10-01T10:00:00Z,c\n"+
		"u4,page_viewed,2026-10-01T10:00:00Z,d\n"+
		"u5,page_viewed,2026-10-01T10:00:00Z,\"unterminated\n"+
		"u6,page_viewed,2026-10-01T10:00:00Z,f\n")
	out, errOut, err := runWaymark(t, url, "import", events)
	if err == nil || !strings.Contains(err.Error(), "1 line was rejected") {
		t.Fatalf("err = %v, want a non-zero exit saying 1 line was rejected", err)
	}
	if !strings.Contains(errOut, "line 6: a quoted value opened on this line is not closed") || !strings.Contains(errOut, "line 7, which it had swallowed, is read on its own") {
		t.Errorf("stderr does not report the open quote on line 6 and the swallowed line 7:\n%s", errOut)
	}
	if !strings.Contains(out, "5 stored, 0 already there, 1 bad lines") {
		t.Errorf("summary %q, want 5 stored and 1 bad line", out)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var users []string
	rows, err := pool.Query(context.Background(), `SELECT substr(i.identity, 3) FROM events e JOIN identities i ON i.contact_id = e.contact_id AND i.identity LIKE 'u:%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	if strings.Join(users, ",") != "u1,u2,u3,u4,u6" {
		t.Fatalf("stored events of %v, want u1,u2,u3,u4,u6 (u6 came after the open quote)", users)
	}

	// A clean file still exits 0.
	clean := writeFile(t, "clean.csv", "userId,event,timestamp\nu7,page_viewed,2026-10-01T10:00:00Z\n")
	if _, _, err := runWaymark(t, url, "import", clean); err != nil {
		t.Fatalf("clean import: %v", err)
	}
}
