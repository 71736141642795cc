package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/contact"
	"github.com/waymark/waymark/internal/ingest"
)

// Contacts: as ingestion writes them (created, identified, merged, moved
// back to their first message, their identify traits merged), and as the
// API, the dashboard and the command line read them.

const (
	// sqlEarlierContacts moves back the creation of the contacts whose
	// messages now stored ($1 contacts, $2 the earliest timestamp of each)
	// are older than it: a contact exists from its first event or identify
	// (contacts imported from a list, and their history after it, exist in
	// a backtest of that history). A contact still where it was created
	// enters its stage then too. Only the contacts changed are written;
	// each listed one is looked up by key, so the callers list only those
	// that may need it: an import those it has not seen exist from these
	// times (identityCache.older), live ingestion those with messages over
	// a minute old (in the steady state, none; a client's clock a few
	// seconds behind the server's is not history).
	sqlEarlierContacts = sqlEarlierSet + `unnest($1::bigint[], $2::timestamptz[])` + sqlEarlierWhere
	sqlEarlierSet      = `UPDATE contacts c SET created_at = x.first,
        stage_entered_at = CASE WHEN c.stage_entered_at = c.created_at THEN x.first ELSE c.stage_entered_at END
    FROM `
	sqlEarlierWhere = ` AS x(id, first) WHERE c.id = x.id AND x.first < c.created_at`

	sqlInsertContacts = `
INSERT INTO contacts (id, user_id, anonymous_id, created_at, stage_entered_at)
SELECT id, nullif(u, ''), nullif(a, ''), ts, ts FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS t(id, u, a, ts)`

	// sqlMergeTraits merges identify traits into contacts, unless the
	// merged traits would be over $5 bytes (as JSON text) or $6 keys:
	// then the contact is left as it was, its identify events of this
	// batch ($7 contacts, $8 message ids) are taken out again, and its id
	// comes back, refused. The limits are checked on the row the update
	// locks, so two batches cannot pass them together.
	sqlMergeTraits = `
WITH v AS (
    SELECT * FROM unnest($1::bigint[], $2::jsonb[], $3::text[], $4::text[]) AS v(id, traits, email, user_id)
), merged AS (
    UPDATE contacts c SET
        traits = c.traits || v.traits,
        email = coalesce(nullif(v.email, ''), c.email),
        user_id = coalesce(c.user_id, nullif(v.user_id, '')),
        updated_at = now()
    FROM v
    WHERE c.id = v.id AND octet_length((c.traits || v.traits)::text) <= $5
      AND (SELECT count(*) FROM jsonb_object_keys(c.traits || v.traits)) <= $6
    RETURNING c.id
), refused AS (
    SELECT v.id FROM v WHERE v.id NOT IN (SELECT id FROM merged)
), taken AS (
    DELETE FROM events e USING unnest($7::bigint[], $8::text[]) AS x(cid, mid)
    WHERE x.cid IN (SELECT id FROM refused) AND e.contact_id = x.cid AND e.message_id = x.mid
)
SELECT coalesce(array_agg(id), '{}') FROM refused`

	sqlIdentifyContacts = `
UPDATE contacts c SET user_id = v.user_id, updated_at = now()
FROM unnest($1::bigint[], $2::text[]) AS v(id, user_id)
WHERE c.id = v.id AND c.user_id IS NULL`
)

// earliest returns the contacts of the messages (contactOf[i] is msgs[i]'s)
// with the earliest timestamp of each, for sqlEarlierContacts; the contacts
// created for them (the values of drawn) start at it already.
func earliest(msgs []ingest.Message, contactOf []int64, drawn map[int64]int64) ([]int64, []time.Time) {
	created := make(map[int64]bool, len(drawn))
	for _, id := range drawn {
		created[id] = true
	}
	at := map[int64]int{}
	var (
		ids    []int64
		firsts []time.Time
	)
	for i, c := range contactOf {
		if created[c] || c <= 0 {
			continue
		}
		j, ok := at[c]
		if !ok {
			at[c] = len(ids)
			ids, firsts = append(ids, c), append(firsts, msgs[i].Timestamp)
		} else if msgs[i].Timestamp.Before(firsts[j]) {
			firsts[j] = msgs[i].Timestamp
		}
	}
	return ids, firsts
}

// queueContacts queues what the plan p does to contacts — the new
// contacts (drawn: their ids), the anonymous contacts identified, the
// merges — and, unless o.contactsOnly, moves back the creation of the
// contacts whose messages are older (contactOf: each message's contact).
// It returns the reader of their results.
func queueContacts(b *pgx.Batch, msgs []ingest.Message, p *ingest.Plan, contactOf []int64, drawn map[int64]int64, o ingestOptions) func(pgx.BatchResults) error {
	created := false
	if p.Live() > 0 {
		created = true
		// A contact exists from its earliest event (imports are not in
		// time order).
		first := map[int64]time.Time{}
		for i, c := range contactOf {
			if t, ok := first[c]; !ok || msgs[i].Timestamp.Before(t) {
				first[c] = msgs[i].Timestamp
			}
		}
		var (
			live   []int64
			users  []string
			anons  []string
			firsts []time.Time
		)
		for i, c := range p.Created {
			if c.Dead {
				continue
			}
			id := drawn[ingest.Placeholder(i)]
			live = append(live, id)
			users, anons, firsts = append(users, c.UserID), append(anons, c.AnonymousID), append(firsts, first[id])
		}
		b.Queue(sqlInsertContacts, live, users, anons, firsts)
		if o.since != nil {
			o.since.ids, o.since.firsts = append(o.since.ids, live...), append(o.since.firsts, firsts...)
		}
	}
	if len(p.Identify) > 0 {
		ids := make([]int64, 0, len(p.Identify))
		for id := range p.Identify {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		users := make([]string, len(ids))
		for i, id := range ids {
			users[i] = p.Identify[id]
		}
		b.Queue(sqlIdentifyContacts, ids, users)
	}
	for _, mg := range p.Merges {
		queueMerge(b, mg.From, mg.To)
	}
	earlier := false
	if !o.contactsOnly {
		ids, firsts := earliest(msgs, contactOf, drawn)
		if o.cache != nil {
			// An import: only contacts it has not seen exist from these
			// messages' times already.
			ids, firsts = o.cache.older(ids, firsts)
			if o.since != nil {
				o.since.ids, o.since.firsts = append(o.since.ids, ids...), append(o.since.firsts, firsts...)
			}
		}
		// None when every message's contact was created here (a new
		// visitor's first call).
		if earlier = len(ids) > 0; earlier {
			b.Queue(sqlEarlierContacts, ids, firsts)
		}
	}
	return func(br pgx.BatchResults) error {
		if created {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if len(p.Identify) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for _, mg := range p.Merges {
			for i := 0; i < mergeStatements; i++ {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("merging contact %d into %d: %w", mg.From, mg.To, err)
				}
			}
		}
		if earlier {
			_, err := br.Exec()
			return err
		}
		return nil
	}
}

// queueMerge queues the statements that move everything of an anonymous
// contact into the identified contact it turned out to be, and mark it
// merged.
func queueMerge(b *pgx.Batch, from, to int64) {
	// The identities first: this waits for transactions that resolved
	// them to the old contact (sqlResolveAnonymous) so that the events
	// they stored are moved below.
	b.Queue(`UPDATE identities SET contact_id = $2 WHERE contact_id = $1`, from, to)
	b.Queue(`INSERT INTO events (contact_id, message_id, kind, name, properties, context, occurred_at, received_at)
		  SELECT $2, message_id, kind, name, properties, context, occurred_at, received_at FROM events WHERE contact_id = $1
		  ON CONFLICT (contact_id, message_id) DO NOTHING`, from, to)
	b.Queue(`DELETE FROM events WHERE contact_id = $1`, from)
	// Conversions go with their events (a pass does not credit a moved
	// event again: attributeSQL), with the transaction that first stored
	// them (ingest_xid), so that the reports, which take conversions by
	// it, do not count a moved one again.
	b.Queue(`WITH moved AS (DELETE FROM conversions WHERE contact_id = $1 RETURNING *)
		  INSERT INTO conversions (contact_id, message_id, event, occurred_at, value, stage, send_id, touch, touch_at, reason, attributed_at, ingest_xid)
		  SELECT $2, message_id, event, occurred_at, value, stage, send_id, touch, touch_at, reason, attributed_at, ingest_xid FROM moved
		  ON CONFLICT (contact_id, message_id) DO NOTHING`, from, to)
	// The anonymous contact's traits fill gaps, unless that would take the
	// identified contact's over the traits' limits: then they are left
	// out (many anonymous contacts merged into one would otherwise add up
	// without limit).
	b.Queue(`UPDATE contacts t SET traits = CASE WHEN octet_length((f.traits || t.traits)::text) <= $3
		           AND (SELECT count(*) FROM jsonb_object_keys(f.traits || t.traits)) <= $4 THEN f.traits || t.traits ELSE t.traits END,
		         email = coalesce(t.email, f.email), created_at = least(t.created_at, f.created_at), updated_at = now()
		  FROM contacts f WHERE f.id = $1 AND t.id = $2`, from, to, ingest.MaxTraitBytes, ingest.MaxTraitKeys)
	b.Queue(`UPDATE contacts SET merged_into = $2, updated_at = now() WHERE id = $1`, from, to)
}

const mergeStatements = 6

const sqlContactColumns = `id, coalesce(user_id, '') AS user_id, coalesce(anonymous_id, '') AS anonymous_id, coalesce(email, '') AS email,
	traits, status, stage, stage_entered_at, created_at, updated_at`

// ContactByID returns a contact that has not been merged into another;
// contact.ErrNotFound (and ErrNotFound) otherwise.
func (s *Store) ContactByID(ctx context.Context, id int64) (contact.Contact, error) {
	c, err := queryRow[contact.Contact](ctx, s.db, `SELECT `+sqlContactColumns+` FROM contacts WHERE id = $1 AND merged_into IS NULL`, id)
	return c, translateAs(err, "reading a contact", contact.ErrNotFound)
}

// Contacts returns a page of contacts and the cursor of the next page (""
// at the end). Every order is served by an index (keyset pagination, no
// OFFSET), so deep pages cost what the first does.
func (s *Store) Contacts(ctx context.Context, q contact.Query) ([]contact.Contact, string, error) {
	var order, keyset string
	switch q.Sort {
	case "", "id":
		order, keyset = "id", "id > $3::bigint"
	case "-id":
		order, keyset = "id DESC", "id < $3::bigint"
	case "created_at":
		order, keyset = "created_at, id", "(created_at, id) > ($5::timestamptz, $3::bigint)"
	case "-created_at":
		order, keyset = "created_at DESC, id DESC", "(created_at, id) < ($5::timestamptz, $3::bigint)"
	default:
		return nil, "", fmt.Errorf("sort %q: %w", q.Sort, contact.ErrBadCursor)
	}
	var (
		afterID *int64
		afterAt *time.Time
	)
	if q.After != "" {
		id, at, err := parseCursor(q.After)
		if err != nil {
			return nil, "", err
		}
		afterID, afterAt = &id, &at
	}
	if q.Limit <= 0 || q.Limit > 500 {
		q.Limit = 50
	}
	// A filter (or cursor) that is not set is a constant condition, not an
	// OR beside the column's: a generic plan of an OR could not use the
	// email, stage or keyset index (a full scan per search, deep pages
	// walking from the first).
	emailCond, stageCond := `$1::text = ''`, `$2::text = ''`
	if q.Email != "" {
		emailCond = `email = lower($1)`
	}
	if q.Stage != "" {
		stageCond = `stage = $2`
	}
	if afterID == nil {
		keyset = `$3::bigint IS NULL`
	}
	sql := `SELECT ` + sqlContactColumns + ` FROM contacts WHERE merged_into IS NULL
		AND ` + emailCond + ` AND ` + stageCond + `
		AND ` + keyset + `
		ORDER BY ` + order + ` LIMIT $4`
	args := []any{q.Email, q.Stage, afterID, q.Limit + 1}
	if strings.Contains(keyset, "$5") {
		args = append(args, afterAt)
	}
	out, err := queryRows[contact.Contact](ctx, s.db, sql, args...)
	if err != nil {
		return nil, "", translate(err, "listing contacts")
	}
	next := ""
	if len(out) > q.Limit {
		out = out[:q.Limit]
		last := out[len(out)-1]
		next = fmt.Sprintf("%d.%d", last.ID, last.CreatedAt.UnixMicro())
	}
	return out, next, nil
}

func parseCursor(c string) (int64, time.Time, error) {
	a, b, ok := strings.Cut(c, ".")
	id, err1 := strconv.ParseInt(a, 10, 64)
	us, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, time.Time{}, contact.ErrBadCursor
	}
	return id, time.UnixMicro(us), nil
}

// ContactRef resolves what a user typed to name a contact: a numeric id, a
// userId, an anonymousId or an email address; contact.ErrNotFound (and
// ErrNotFound) if none is.
func (s *Store) ContactRef(ctx context.Context, ref string) (int64, error) {
	var id int64
	err := s.db.QueryRow(ctx, `
SELECT id FROM (
    SELECT c.id, 1 AS pref FROM contacts c WHERE $1 ~ '^[0-9]+$' AND c.id = CASE WHEN $1 ~ '^[0-9]{1,18}$' THEN $1::bigint END
    UNION ALL SELECT i.contact_id, 2 FROM identities i WHERE i.identity IN ('u:' || $1, 'a:' || $1)
    UNION ALL SELECT c.id, 3 FROM contacts c WHERE c.email = lower($1) AND c.merged_into IS NULL
) x ORDER BY pref LIMIT 1`, ref).Scan(&id)
	if err != nil {
		return 0, translateAs(err, fmt.Sprintf("finding contact %q", ref), contact.ErrNotFound)
	}
	// A merged contact's history lives with the contact it joined.
	err = s.db.QueryRow(ctx, `SELECT coalesce(merged_into, id) FROM contacts WHERE id = $1`, id).Scan(&id)
	return id, translate(err, "finding contact")
}

// ContactCount is the number of contacts (merged ones not counted).
func (s *Store) ContactCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM contacts WHERE merged_into IS NULL`).Scan(&n)
	return n, translate(err, "counting contacts")
}
