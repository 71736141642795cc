// Package reporttest writes a small history of emails, engagement,
// delivery reports, conversions, offer draws, stage moves and an A/B test
// into a database, in three phases, for the reports' tests (the store's,
// the CLI's and the API's) to check every figure against by hand. Times
// are offsets from a base T0 (a UTC midnight the test picks from its own
// now): days 0 and 1 hold most of it, day 2 one late email.
//
// Contacts (all created T0-30d but 5, created T0+12h):
//
//	1  awareness→consideration T0-10d, →decision T0+1d6h
//	2  awareness throughout
//	3  awareness→decision T0-20d, →retention T0-5d, →consideration T0+1d3h (back)
//	4  awareness throughout (held out of the offer)
//	5  awareness→consideration T0+1d
//	6  awareness throughout (held out of the offer)
//	7  awareness→consideration T0+2h
//
// Emails (status sent unless said):
//
//	101 c1 welcome step 0, w1, warm,  T0+1h   delivered, machine open, human open and 2 clicks
//	102 c2 welcome step 0, w1, plain, T0+2h   machine open, soft bounce (a 'track' open of it is not Waymark's)
//	103 c3 welcome step 1, w2, warm,  T0+1d1h soft then hard bounce
//	104 c1 launch variant 1 (test), b1, T0+1d2h delivered, human open, machine click, unsubscribe
//	105 c2 launch variant 2 (test), b2, T0+1d2h delivered, complaint, human open
//	106 c3 offer surprise, o1, warm,  T0+4h   delivered, human open and click
//	107 c4 welcome step 0, w1: failed (not counted)
//	108 c2 welcome step 0, w1, plain, T0-1d+1h (before the period)
//	109 c5 welcome step 0, w1, plain, T0+20h  nothing
//	110 c7 welcome step 0, w1, plain: opened T0+2d30m while sending, sent T0+2d1h (phase C)
//
// Goal events (conversions): c1 50 T0+6h → 101; c1 30 T0+1d5h → 104;
// c3 20 T0+5h and 10 T0+6h → 106; c2 40 T0+1d9h, c4 25 T0+10h, c1 100
// T0+32d, c6 60 T0-1d: none credited. Offer surprise drawn T0+30m: 1 and
// 3 drawn, 4 and 6 held out.
package reporttest

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Execer runs SQL (a pool, a connection, a transaction).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// The phases' SQL; $1 is T0.
var phases = [][]string{
	// Phase A: what happened by T0+12h, with part of its outcomes.
	{
		`INSERT INTO contacts (id, email, stage, created_at) VALUES
		 (1, 'c1@example.com', 'decision', $1::timestamptz - interval '30 days'),
		 (2, 'c2@example.com', 'awareness', $1::timestamptz - interval '30 days'),
		 (3, 'c3@example.com', 'consideration', $1::timestamptz - interval '30 days'),
		 (4, 'c4@example.com', 'awareness', $1::timestamptz - interval '30 days'),
		 (5, 'c5@example.com', 'consideration', $1::timestamptz + interval '12 hours'),
		 (6, 'c6@example.com', 'awareness', $1::timestamptz - interval '30 days'),
		 (7, 'c7@example.com', 'consideration', $1::timestamptz - interval '30 days')`,
		`INSERT INTO transitions (contact_id, from_stage, to_stage, rule, rule_version, observed, trigger, at) VALUES
		 (3, 'awareness', 'decision', 'r', 1, '{}', 'sweep', $1::timestamptz - interval '20 days'),
		 (1, 'awareness', 'consideration', 'r', 1, '{}', 'sweep', $1::timestamptz - interval '10 days'),
		 (3, 'decision', 'retention', 'r', 1, '{}', 'sweep', $1::timestamptz - interval '5 days'),
		 (7, 'awareness', 'consideration', 'r', 1, '{}', 'event', $1::timestamptz + interval '2 hours')`,
		`INSERT INTO sends (contact_id, id, sequence, step, offer, template, status, due_at, tone, sent_at, broadcast, broadcast_run, variant, ab_test)
		 OVERRIDING SYSTEM VALUE VALUES
		 (1, 101, 'welcome', 0, NULL, 'w1', 'sent', $1::timestamptz, 'warm', $1::timestamptz + interval '1 hour', NULL, NULL, NULL, NULL),
		 (2, 102, 'welcome', 0, NULL, 'w1', 'sent', $1::timestamptz, 'plain', $1::timestamptz + interval '2 hours', NULL, NULL, NULL, NULL),
		 (3, 106, NULL, 0, 'surprise', 'o1', 'sent', $1::timestamptz, 'warm', $1::timestamptz + interval '4 hours', NULL, NULL, NULL, NULL),
		 (4, 107, 'welcome', 0, NULL, 'w1', 'failed', $1::timestamptz, NULL, NULL, NULL, NULL, NULL, NULL),
		 (2, 108, 'welcome', 0, NULL, 'w1', 'sent', $1::timestamptz - interval '1 day', 'plain', $1::timestamptz - interval '23 hours', NULL, NULL, NULL, NULL)`,
		`INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES
		 (1, 'a1', 'internal', 'email_delivered', '{"send_id": 101, "provider": "ses"}', $1::timestamptz + interval '61 minutes'),
		 (1, 'a2', 'internal', 'email_opened', '{"send_id": 101, "machine": true}', $1::timestamptz + interval '65 minutes'),
		 (3, 'a3', 'internal', 'email_delivered', '{"send_id": 106}', $1::timestamptz + interval '4 hours 1 minute'),
		 (3, 'a4', 'internal', 'email_opened', '{"send_id": 106}', $1::timestamptz + interval '4 hours 10 minutes'),
		 (2, 'a5', 'track', 'email_opened', '{"send_id": 102}', $1::timestamptz + interval '3 hours')`,
		`INSERT INTO offer_draws (contact_id, offer, drawn, at) VALUES
		 (1, 'surprise', true, $1::timestamptz + interval '30 minutes'),
		 (3, 'surprise', true, $1::timestamptz + interval '30 minutes'),
		 (4, 'surprise', false, $1::timestamptz + interval '30 minutes'),
		 (6, 'surprise', false, $1::timestamptz + interval '30 minutes')`,
		`INSERT INTO conversions (contact_id, message_id, event, occurred_at, value, stage, send_id, touch, touch_at, reason) VALUES
		 (1, 'o1', 'order_completed', $1::timestamptz + interval '6 hours', 50, 'consideration', 101, 'clicked', $1::timestamptz + interval '3 hours', 'clicked'),
		 (3, 'o3', 'order_completed', $1::timestamptz + interval '5 hours', 20, 'retention', 106, 'opened', $1::timestamptz + interval '250 minutes', 'opened')`,
	},
	// Phase B: day 1, the rest of day 0's outcomes, later orders.
	{
		`INSERT INTO transitions (contact_id, from_stage, to_stage, rule, rule_version, observed, trigger, at) VALUES
		 (5, 'awareness', 'consideration', 'r', 1, '{}', 'sweep', $1::timestamptz + interval '1 day'),
		 (3, 'retention', 'consideration', 'r', 1, '{}', 'sweep', $1::timestamptz + interval '1 day 3 hours'),
		 (1, 'consideration', 'decision', 'r', 1, '{}', 'sweep', $1::timestamptz + interval '1 day 6 hours')`,
		`INSERT INTO broadcast_runs (id, broadcast, scheduled_for, local, definition, started_at, decided_at, decision)
		 OVERRIDING SYSTEM VALUE VALUES (7, 'launch', $1::timestamptz + interval '1 day 1 hour', false,
		 '{"Name": "launch", "Template": "b1", "Audience": {}, "Test": {"Variants": [{"Template": "b1"}, {"Template": "b2"}], "Share": 0.5, "PickBy": "opens", "After": 3600000000000}}',
		 $1::timestamptz + interval '1 day 1 hour', $1::timestamptz + interval '1 day 3 hours',
		 '{"PickBy": "opens", "Winner": 1, "Reason": "variant 2 opened most", "Variants": []}')`,
		`INSERT INTO sends (contact_id, id, sequence, step, offer, template, status, due_at, tone, sent_at, broadcast, broadcast_run, variant, ab_test, claimed_at)
		 OVERRIDING SYSTEM VALUE VALUES
		 (5, 109, 'welcome', 0, NULL, 'w1', 'sent', $1::timestamptz, 'plain', $1::timestamptz + interval '20 hours', NULL, NULL, NULL, NULL, NULL),
		 (3, 103, 'welcome', 1, NULL, 'w2', 'sent', $1::timestamptz, 'warm', $1::timestamptz + interval '1 day 1 hour', NULL, NULL, NULL, NULL, NULL),
		 (1, 104, NULL, 0, NULL, 'b1', 'sent', $1::timestamptz, NULL, $1::timestamptz + interval '1 day 2 hours', 'launch', 7, 0, true, NULL),
		 (2, 105, NULL, 0, NULL, 'b2', 'sent', $1::timestamptz, NULL, $1::timestamptz + interval '1 day 2 hours', 'launch', 7, 1, true, NULL),
		 (7, 110, 'welcome', 0, NULL, 'w1', 'sending', $1::timestamptz, 'plain', NULL, NULL, NULL, NULL, NULL, $1::timestamptz + interval '2 days 29 minutes')`,
		`INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES
		 (1, 'b1', 'internal', 'email_opened', '{"send_id": 101}', $1::timestamptz + interval '2 hours'),
		 (1, 'b2', 'internal', 'email_clicked', '{"send_id": 101}', $1::timestamptz + interval '3 hours'),
		 (1, 'b3', 'internal', 'email_clicked', '{"send_id": 101}', $1::timestamptz + interval '5 hours'),
		 (1, 'b4', 'internal', 'email_opened', '{"send_id": 101}', $1::timestamptz + interval '7 hours'),
		 (2, 'b5', 'internal', 'email_opened', '{"send_id": 102, "machine": true}', $1::timestamptz + interval '121 minutes'),
		 (2, 'b6', 'internal', 'email_bounced', '{"send_id": 102, "type": "soft"}', $1::timestamptz + interval '122 minutes'),
		 (3, 'b7', 'internal', 'email_bounced', '{"send_id": 103, "type": "soft"}', $1::timestamptz + interval '1 day 61 minutes'),
		 (3, 'b8', 'internal', 'email_bounced', '{"send_id": 103, "type": "hard"}', $1::timestamptz + interval '1 day 62 minutes'),
		 (1, 'b9', 'internal', 'email_delivered', '{"send_id": 104}', $1::timestamptz + interval '1 day 121 minutes'),
		 (1, 'b10', 'internal', 'email_opened', '{"send_id": 104}', $1::timestamptz + interval '1 day 3 hours'),
		 (1, 'b11', 'internal', 'email_clicked', '{"send_id": 104, "machine": true}', $1::timestamptz + interval '1 day 3 hours'),
		 (1, 'b12', 'internal', 'unsubscribed', '{"send_id": 104}', $1::timestamptz + interval '1 day 4 hours'),
		 (2, 'b13', 'internal', 'email_delivered', '{"send_id": 105}', $1::timestamptz + interval '1 day 121 minutes'),
		 (2, 'b14', 'internal', 'email_complained', '{"send_id": 105}', $1::timestamptz + interval '1 day 5 hours'),
		 (2, 'b15', 'internal', 'email_opened', '{"send_id": 105}', $1::timestamptz + interval '1 day 4 hours'),
		 (3, 'b16', 'internal', 'email_clicked', '{"send_id": 106}', $1::timestamptz + interval '4 hours 20 minutes'),
		 (7, 'b17', 'internal', 'email_opened', '{"send_id": 110}', $1::timestamptz + interval '2 days 30 minutes')`,
		`INSERT INTO conversions (contact_id, message_id, event, occurred_at, value, stage, send_id, touch, touch_at, reason) VALUES
		 (1, 'o2', 'order_completed', $1::timestamptz + interval '1 day 5 hours', 30, 'consideration', 104, 'opened', $1::timestamptz + interval '1 day 3 hours', 'opened'),
		 (3, 'o4', 'order_completed', $1::timestamptz + interval '6 hours', 10, 'retention', 106, 'clicked', $1::timestamptz + interval '260 minutes', 'clicked'),
		 (2, 'o5', 'order_completed', $1::timestamptz + interval '1 day 9 hours', 40, 'awareness', NULL, NULL, NULL, 'no email opened or clicked'),
		 (4, 'o6', 'order_completed', $1::timestamptz + interval '10 hours', 25, 'awareness', NULL, NULL, NULL, 'no email opened or clicked'),
		 (1, 'o8', 'order_completed', $1::timestamptz + interval '32 days', 100, 'decision', NULL, NULL, NULL, 'no email opened or clicked'),
		 (6, 'o9', 'order_completed', $1::timestamptz - interval '1 day', 60, 'awareness', NULL, NULL, NULL, 'no email opened or clicked')`,
	},
	// Phase C: the email opened while it was being sent is sent.
	{
		`UPDATE sends SET status = 'sent', sent_at = $1::timestamptz + interval '2 days 1 hour' WHERE id = 110`,
	},
}

// Phase writes phase i (0, 1, 2) of the history, based at t0.
func Phase(ctx context.Context, db Execer, t0 time.Time, i int) error {
	for k, q := range phases[i] {
		if _, err := db.Exec(ctx, q, t0); err != nil {
			return fmt.Errorf("history phase %d, statement %d: %w", i, k+1, err)
		}
	}
	return nil
}

// Phases is how many phases the history has.
const Phases = 3

// PhaseEnds are the times each phase's history reaches (from T0): a
// refresh after phase i runs at T0 + PhaseEnds[i].
var PhaseEnds = []time.Duration{12 * time.Hour, 48 * time.Hour, 50 * time.Hour}
