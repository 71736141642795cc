package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

// BenchmarkRecordGroup times the sender's group commit alone, on an
// otherwise idle machine: each operation commits one group of g messages,
// the marks of the next g (on the wire) with the ends of the previous g
// (sent, their enrolments completed), as a pass over g connections does.
// Set against the group's time under `waymark-bench send` (its
// -sql-stats), the difference is what the rest of the send's load (the
// connections, the claims, smtp-sink) costs the writer.
//
//	go test -run '^$' -bench RecordGroup ./internal/store/
func BenchmarkRecordGroup(b *testing.B) {
	for _, g := range []int{5, 29, 60} {
		b.Run(fmt.Sprintf("group=%d", g), func(b *testing.B) {
			ctx := context.Background()
			pool := pgtest.Pool(b)
			n := g * (b.N + 1)
			for _, q := range []string{
				`INSERT INTO contacts (id, email) SELECT i, 'r' || i || '@example.com' FROM generate_series(1, $1) i`,
				`INSERT INTO enrolments (contact_id, sequence, version, enrolled_at) SELECT i, 'welcome', 1, now() FROM generate_series(1, $1) i`,
				`INSERT INTO sends (contact_id, enrolment_id, sequence, step, template, due_at, claimed_by, claimed_at)
				 SELECT e.contact_id, e.id, e.sequence, 0, 'welcome', now(), 'bench', now() FROM enrolments e WHERE e.contact_id <= $1`,
			} {
				if _, err := pool.Exec(ctx, q, n); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := pool.Exec(ctx, `VACUUM ANALYZE contacts, enrolments, sends`); err != nil {
				b.Fatal(err)
			}
			rows, err := pool.Query(ctx, `SELECT contact_id, id, enrolment_id FROM sends ORDER BY contact_id`)
			if err != nil {
				b.Fatal(err)
			}
			var dues []*campaigns.Due
			for rows.Next() {
				d := &campaigns.Due{Sequence: "welcome", Template: "welcome"}
				if err := rows.Scan(&d.ContactID, &d.ID, &d.EnrolmentID); err != nil {
					b.Fatal(err)
				}
				dues = append(dues, d)
			}
			if rows.Err() != nil || len(dues) != n {
				b.Fatalf("%d sends (%v), want %d", len(dues), rows.Err(), n)
			}
			st := store.New(pool)
			group := func(i int) (marks []*campaigns.Due, finals []campaigns.Final) {
				marks = dues[i*g : (i+1)*g]
				if i == 0 {
					return marks, nil
				}
				at := time.Now()
				for _, d := range dues[(i-1)*g : i*g] {
					finals = append(finals, campaigns.Final{Due: d, Status: "sent", Detail: "250 2.0.0 Ok: queued as 3F2A1B", Recipient: "r@example.com",
						MessageID: "<m@example.com>", Tone: "friendly", ToneReason: "default", TemplateVersion: 1, At: at,
						End: &campaigns.Ending{Enrolment: campaigns.Enrolment{ID: d.EnrolmentID, ContactID: d.ContactID}, Status: "completed", Reason: "last step sent", At: at}})
				}
				return marks, finals
			}
			marks, _ := group(0)
			if _, err := st.Record(ctx, "bench", marks, nil, nil); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				marks, finals := group(i)
				marked, err := st.Record(ctx, "bench", marks, finals, nil)
				if err != nil {
					b.Fatal(err)
				}
				for j, ok := range marked {
					if !ok {
						b.Fatalf("group %d: message %d not marked", i, j)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*g), "µs/message")
			// What the groups recorded: all but the last group sent and
			// their enrolments completed, the last group on the wire.
			var sent, done, wire int
			if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'sending') FROM sends`).Scan(&sent, &wire); err != nil {
				b.Fatal(err)
			}
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM enrolments WHERE status = 'completed'`).Scan(&done); err != nil {
				b.Fatal(err)
			}
			if sent != b.N*g || done != b.N*g || wire != g {
				b.Fatalf("sent %d, completed %d, on the wire %d; want %d, %d, %d", sent, done, wire, b.N*g, b.N*g, g)
			}
		})
	}
}

// BenchmarkClaimDue claims batches of due sends with their context, as a
// sender's pass does, in its heavy case: every send of a sequence (so the
// one-address-one-email check runs), a frequency cap (so each contact's
// sends in the window are read) and earlier sends in the window. The
// claims are released between operations. It reports the cost per send
// claimed, which reading the rows (scanned by position) is part of.
//
//	go test -run '^$' -bench ClaimDue ./internal/store/
func BenchmarkClaimDue(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			pool := pgtest.Pool(b)
			const n = 10_000
			now := time.Now()
			for _, q := range []string{
				`INSERT INTO contacts (id, email, traits, created_at) SELECT i, 'c' || i || '@example.com', '{"timezone": "Europe/Paris"}', $2 FROM generate_series(1, $1) i`,
				`INSERT INTO enrolments (contact_id, sequence, version, enrolled_at) SELECT i, 'welcome', 1, $2::timestamptz - interval '3 days' FROM generate_series(1, $1) i`,
				`INSERT INTO sends (contact_id, enrolment_id, sequence, step, template, due_at, status, sent_at)
				 SELECT e.contact_id, e.id, e.sequence, k, 'step' || k, $2::timestamptz - (3 - k) * interval '1 day', 'sent', $2::timestamptz - (3 - k) * interval '1 day'
				 FROM enrolments e, generate_series(0, 1) k WHERE e.contact_id <= $1`,
				`INSERT INTO sends (contact_id, enrolment_id, sequence, step, template, due_at)
				 SELECT e.contact_id, e.id, e.sequence, 2, 'step2', $2::timestamptz - interval '1 minute' FROM enrolments e WHERE e.contact_id <= $1`,
			} {
				if _, err := pool.Exec(ctx, q, n, now); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := pool.Exec(ctx, `VACUUM ANALYZE contacts, enrolments, sends`); err != nil {
				b.Fatal(err)
			}
			st := store.New(pool)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				due, err := st.ClaimDue(ctx, "bench", batch, now, 7*24*time.Hour, 0, 1)
				if err != nil {
					b.Fatal(err)
				}
				if len(due) != batch || len(due[0].SentInWindow) != 2 || due[0].Email == "" {
					b.Fatalf("claimed %d sends (the first with %d sent in the window, address %q), want %d with 2", len(due), len(due[0].SentInWindow), due[0].Email, batch)
				}
				b.StopTimer()
				if _, err := pool.Exec(ctx, `UPDATE sends SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = 'bench'`); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch)/1000, "µs/send")
		})
	}
}
