package store

import (
	"context"
	"time"

	"github.com/waymark/waymark/internal/stats"
	"github.com/waymark/waymark/rule"
)

// stageCount is a number of contacts (or moves, entries) in a stage.
type stageCount struct {
	Stage string `db:"stage"`
	N     int64  `db:"n"`
}

// StageCounts returns how many contacts are in each stage (every stage is
// present, zero or not).
func (s *Store) StageCounts(ctx context.Context) (map[rule.Stage]int64, error) {
	counts, err := queryRows[stageCount](ctx, s.db, `SELECT stage, count(*) AS n FROM contacts WHERE merged_into IS NULL GROUP BY stage`)
	if err != nil {
		return nil, translate(err, "counting stages")
	}
	out := make(map[rule.Stage]int64, len(rule.Stages))
	for _, st := range rule.Stages {
		out[st] = 0
	}
	for _, c := range counts {
		out[rule.Stage(c.Stage)] = c.N
	}
	return out, nil
}

// ContactRows counts the rows of contacts, merged contacts included.
func (s *Store) ContactRows(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM contacts`).Scan(&n)
	return n, translate(err, "counting contacts")
}

const sqlDemoSends = `
SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'unknown') AS unknown,
       count(*) FILTER (WHERE status = 'queued' AND due_at <= $1) AS due,
       count(*) FILTER (WHERE status = 'sending') AS sending,
       count(*) FILTER (WHERE status = 'queued' AND delayed_reason LIKE 'held:%') AS held,
       count(*) FILTER (WHERE status = 'queued' AND due_at > $1) AS later,
       count(*) FILTER (WHERE status = 'sent' AND sequence = 'win-back') AS win_backs,
       count(*) FILTER (WHERE status = 'sent' AND offer IS NOT NULL) AS offer_emails
FROM sends`

// sendCounts is sqlDemoSends' row.
type sendCounts struct {
	Sent        int64 `db:"sent"`
	Failed      int64 `db:"failed"`
	Unknown     int64 `db:"unknown"`
	Due         int64 `db:"due"`
	Sending     int64 `db:"sending"`
	Held        int64 `db:"held"`
	Later       int64 `db:"later"`
	WinBacks    int64 `db:"win_backs"`
	OfferEmails int64 `db:"offer_emails"`
}

const sqlEngagementCounts = `SELECT count(*) FILTER (WHERE name = 'email_opened') AS opened, count(*) FILTER (WHERE name = 'email_clicked') AS clicked,
		count(*) FILTER (WHERE name = 'unsubscribed') AS unsubscribed
		FROM events WHERE name IN ('email_opened', 'email_clicked', 'unsubscribed')`

// engagementCounts is sqlEngagementCounts' row.
type engagementCounts struct {
	Opened       int64 `db:"opened"`
	Clicked      int64 `db:"clicked"`
	Unsubscribed int64 `db:"unsubscribed"`
}

// sentCount is a number of emails sent with one tone, or one template.
type sentCount struct {
	Kind string `db:"kind"` // tone or template
	Key  string `db:"key"`
	N    int64  `db:"n"`
}

// DemoFigures counts contacts per stage and emails, as of now (for what
// is due).
func (s *Store) DemoFigures(ctx context.Context, now time.Time) (stats.DemoFigures, error) {
	var f stats.DemoFigures
	var err error
	if f.Stages, err = s.StageCounts(ctx); err != nil {
		return f, err
	}
	sc, err := queryRow[sendCounts](ctx, s.db, sqlDemoSends, now)
	if err != nil {
		return f, translate(err, "counting emails")
	}
	f.Sent, f.Failed, f.Unknown, f.Due, f.Sending, f.Held, f.Later, f.WinBacks, f.OfferEmails =
		sc.Sent, sc.Failed, sc.Unknown, sc.Due, sc.Sending, sc.Held, sc.Later, sc.WinBacks, sc.OfferEmails
	ec, err := queryRow[engagementCounts](ctx, s.db, sqlEngagementCounts)
	if err != nil {
		return f, translate(err, "counting opens and clicks")
	}
	f.Opened, f.Clicked, f.Unsubscribed = ec.Opened, ec.Clicked, ec.Unsubscribed
	sent, err := queryRows[sentCount](ctx, s.db, `SELECT 'tone' AS kind, coalesce(tone, '') AS key, count(*) AS n FROM sends WHERE status = 'sent' GROUP BY tone
		UNION ALL SELECT 'template', template, count(*) FROM sends WHERE status = 'sent' GROUP BY template`)
	if err != nil {
		return f, translate(err, "counting emails by tone")
	}
	f.SentByTone, f.SentByTemplate = map[string]int64{}, map[string]int64{}
	for _, c := range sent {
		if c.Kind == "tone" {
			f.SentByTone[c.Key] = c.N
		} else {
			f.SentByTemplate[c.Key] = c.N
		}
	}
	return f, nil
}

// NextDue is when the earliest queued email is due; ok is false when none
// is queued.
func (s *Store) NextDue(ctx context.Context) (at time.Time, ok bool, err error) {
	var t *time.Time
	if err := s.db.QueryRow(ctx, `SELECT min(due_at) FROM sends WHERE status = 'queued'`).Scan(&t); err != nil {
		return time.Time{}, false, translate(err, "finding the next email due")
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
}
