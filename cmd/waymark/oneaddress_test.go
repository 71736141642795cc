package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

// One address, one email (DESIGN.md, "How data flows"; issue 18, item 2):
// two contacts whose addresses normalise alike each enter the welcome
// sequence, but the address gets the welcome once — the other contact's
// send is skipped, naming the contact it duplicates — and a contact of its
// own address still gets its own. Contacts are not merged by address.
func TestOneAddressGetsOneEmail(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	smtp := smtptest.Start(t)
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", smtp.Addr()), "WAYMARK_FROM": "Shop <news@shop.example>"}
	dir := t.TempDir()
	files := map[string]string{
		"contacts.csv": "userId,email,first_name\njo-work,JO@EXAMPLE.COM,Jo\njo-home,jo@example.com,Jo\nkim,kim@example.com,Kim\n",
		"journey.yaml": `sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: welcome}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: welcome, subject: "Welcome, {{.Contact.FirstName}}", text: "Glad you are here."}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"import", filepath.Join(dir, "contacts.csv")}, {"apply", "-f", filepath.Join(dir, "journey.yaml")}, {"tick"}, {"tick"}} {
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
	got := map[string]int{}
	for _, m := range smtp.Messages() {
		got[strings.Join(m.To, ",")]++
	}
	if len(got) != 2 || got["jo@example.com"] != 1 || got["kim@example.com"] != 1 {
		t.Fatalf("received %v, want one welcome to jo@example.com and one to kim@example.com", got)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var contacts int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM contacts WHERE email = 'jo@example.com' AND merged_into IS NULL`).Scan(&contacts); err != nil || contacts != 2 {
		t.Fatalf("%d contacts with jo@example.com (%v), want the two, not merged", contacts, err)
	}
	var first, second int64
	if err := pool.QueryRow(context.Background(), `SELECT min(id), max(id) FROM contacts WHERE email = 'jo@example.com'`).Scan(&first, &second); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(context.Background(), `SELECT s.contact_id, s.status, coalesce(s.delayed_reason, '') FROM sends s JOIN contacts k ON k.id = s.contact_id
		WHERE k.email = 'jo@example.com' ORDER BY s.contact_id`)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var id int64
		var status, reason string
		if err := rows.Scan(&id, &status, &reason); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%d %s %s", id, status, reason))
	}
	want := []string{
		fmt.Sprintf("%d sent ", first),
		fmt.Sprintf("%d skipped one address, one email: jo@example.com gets this email as contact %d", second, first),
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("jo's sends:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
