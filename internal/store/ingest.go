package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/ingest"
)

const (
	sqlResolveIdentities = `
SELECT i.identity, i.contact_id, c.user_id IS NOT NULL
FROM identities i JOIN contacts c ON c.id = i.contact_id
WHERE i.identity = ANY($1::text[])`

	sqlNewContactIDs = `SELECT nextval('contact_id_seq') FROM generate_series(1, $1::int)`

	sqlInsertIdentities = `
INSERT INTO identities (identity, contact_id)
SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (identity) DO NOTHING
RETURNING identity`

	sqlInsertContacts = `
INSERT INTO contacts (id, user_id, anonymous_id, created_at, stage_entered_at)
SELECT id, nullif(u, ''), nullif(a, ''), ts, ts FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS t(id, u, a, ts)`

	sqlInsertEvents = `
INSERT INTO events (contact_id, message_id, kind, name, properties, context, occurred_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::timestamptz[])
ON CONFLICT (contact_id, message_id) DO NOTHING
RETURNING contact_id, message_id`

	sqlMergeTraits = `
UPDATE contacts c SET
    traits = c.traits || v.traits,
    email = coalesce(nullif(v.email, ''), c.email),
    user_id = coalesce(c.user_id, nullif(v.user_id, '')),
    updated_at = now()
FROM unnest($1::bigint[], $2::jsonb[], $3::text[], $4::text[]) AS v(id, traits, email, user_id)
WHERE c.id = v.id`

	sqlIdentifyContacts = `
UPDATE contacts c SET user_id = v.user_id, updated_at = now()
FROM unnest($1::bigint[], $2::text[]) AS v(id, user_id)
WHERE c.id = v.id AND c.user_id IS NULL`
)

// mergeContact moves everything of an anonymous contact into the
// identified contact it turned out to be, and marks it merged.
func mergeContact(ctx context.Context, tx pgx.Tx, from, to int64) error {
	steps := []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO events (contact_id, message_id, kind, name, properties, context, occurred_at, received_at)
		  SELECT $2, message_id, kind, name, properties, context, occurred_at, received_at FROM events WHERE contact_id = $1
		  ON CONFLICT (contact_id, message_id) DO NOTHING`, []any{from, to}},
		{`DELETE FROM events WHERE contact_id = $1`, []any{from}},
		{`UPDATE identities SET contact_id = $2 WHERE contact_id = $1`, []any{from, to}},
		{`UPDATE contacts t SET traits = f.traits || t.traits, email = coalesce(t.email, f.email),
		         created_at = least(t.created_at, f.created_at), updated_at = now()
		  FROM contacts f WHERE f.id = $1 AND t.id = $2`, []any{from, to}},
		{`UPDATE contacts SET merged_into = $2, updated_at = now() WHERE id = $1`, []any{from, to}},
	}
	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("merging contact %d into %d: %w", from, to, err)
		}
	}
	return nil
}

// Ingest implements ingest.Store: it resolves each message's contact
// (creating contacts for new ids, joining an anonymous id to a user id,
// merging an anonymous contact into the identified one), stores the events
// once each, and merges identify traits, all in one transaction.
func (s *Store) Ingest(ctx context.Context, msgs []ingest.Message) (ingest.Result, error) {
	var res ingest.Result
	err := s.inTx(ctx, "storing events", func(tx pgx.Tx) error {
		var err error
		res, err = ingestTx(ctx, tx, msgs)
		return err
	})
	return res, err
}

type identityInfo struct {
	contact    int64
	identified bool // the contact has a user id
}

func ingestTx(ctx context.Context, tx pgx.Tx, msgs []ingest.Message) (ingest.Result, error) {
	var res ingest.Result

	// 1. The identities the batch mentions, and whom they belong to now.
	var idents []string
	seen := map[string]bool{}
	for i := range msgs {
		for _, id := range identityKeys(&msgs[i]) {
			if id != "" && !seen[id] {
				seen[id] = true
				idents = append(idents, id)
			}
		}
	}
	known := make(map[string]identityInfo, len(idents))
	rows, err := tx.Query(ctx, sqlResolveIdentities, idents)
	if err != nil {
		return res, err
	}
	var (
		ident      string
		cid        int64
		identified bool
	)
	_, err = pgx.ForEachRow(rows, []any{&ident, &cid, &identified}, func() error {
		known[ident] = identityInfo{cid, identified}
		return nil
	})
	if err != nil {
		return res, err
	}

	// 2. Decide each message's contact in order. New contacts get
	// placeholder ids (negative) until ids are drawn from the sequence.
	type newContact struct {
		user, anon string
		dead       bool // folded into another contact of the batch
	}
	var (
		created    []newContact
		newIdents  = map[string]int64{}
		identify   = map[int64]string{} // existing anonymous contact → user id it now has
		merges     [][2]int64           // anonymous contact → identified contact
		merged     = map[int64]int64{}
		contactOf  = make([]int64, len(msgs))
		nextHolder = int64(-1)
	)
	lookup := func(id string) (identityInfo, bool) {
		info, ok := known[id]
		if ok {
			if to, m := merged[info.contact]; m {
				info.contact = to
			}
		}
		return info, ok
	}
	for i := range msgs {
		m := &msgs[i]
		u, a := identityKeys(m)[0], identityKeys(m)[1]
		ui, uok := lookup(u)
		ai, aok := lookup(a)
		switch {
		case u != "" && uok:
			contactOf[i] = ui.contact
			if a != "" && !aok {
				known[a] = identityInfo{ui.contact, true}
				newIdents[a] = ui.contact
			} else if a != "" && ai.contact != ui.contact && !ai.identified {
				// The anonymous visitor turned out to be this user.
				if ai.contact > 0 {
					merges = append(merges, [2]int64{ai.contact, ui.contact})
				} else {
					// Created earlier in this batch: fold it in instead.
					created[-ai.contact-1].dead = true
					newIdents[a] = ui.contact
				}
				merged[ai.contact] = ui.contact
				known[a] = identityInfo{ui.contact, true}
			}
		case u != "" && aok && !ai.identified:
			// An anonymous contact becomes identified.
			contactOf[i] = ai.contact
			known[u] = identityInfo{ai.contact, true}
			newIdents[u] = ai.contact
			if ai.contact > 0 {
				identify[ai.contact] = m.UserID
			} else {
				created[-ai.contact-1].user = m.UserID
			}
			for k, v := range known {
				if v.contact == ai.contact {
					known[k] = identityInfo{v.contact, true}
				}
			}
		case u != "":
			// A new user (an anonymous id already taken by another user
			// stays with that user: shared devices).
			id := nextHolder
			nextHolder--
			created = append(created, newContact{user: m.UserID})
			known[u] = identityInfo{id, true}
			newIdents[u] = id
			if a != "" && !aok {
				created[len(created)-1].anon = m.AnonymousID
				known[a] = identityInfo{id, true}
				newIdents[a] = id
			}
			contactOf[i] = id
		case aok:
			contactOf[i] = ai.contact
		default:
			id := nextHolder
			nextHolder--
			created = append(created, newContact{anon: m.AnonymousID})
			known[a] = identityInfo{id, false}
			newIdents[a] = id
			contactOf[i] = id
		}
	}

	// 3. Draw real ids for new contacts and create them.
	real := func(id int64) int64 { return id }
	if len(created) > 0 {
		rows, err := tx.Query(ctx, sqlNewContactIDs, len(created))
		if err != nil {
			return res, err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return res, err
		}
		real = func(id int64) int64 {
			for id < 0 {
				if to, ok := merged[id]; ok {
					id = to
					continue
				}
				return ids[-id-1]
			}
			return id
		}
		for i := range contactOf {
			contactOf[i] = real(contactOf[i])
		}
		for k, v := range newIdents {
			newIdents[k] = real(v)
		}
		// A contact exists from its earliest event (imports are not in
		// time order).
		earliest := map[int64]time.Time{}
		for i, c := range contactOf {
			if t, ok := earliest[c]; !ok || msgs[i].Timestamp.Before(t) {
				earliest[c] = msgs[i].Timestamp
			}
		}
		var (
			live   []int64
			users  []string
			anons  []string
			firsts []any
		)
		for i, c := range created {
			if c.dead {
				continue
			}
			live = append(live, ids[i])
			users, anons, firsts = append(users, c.user), append(anons, c.anon), append(firsts, earliest[ids[i]])
		}
		if _, err := tx.Exec(ctx, sqlInsertContacts, live, users, anons, firsts); err != nil {
			return res, err
		}
	}
	if len(newIdents) > 0 {
		keys := make([]string, 0, len(newIdents))
		for k := range newIdents {
			keys = append(keys, k)
		}
		sort.Strings(keys) // one lock order for all writers
		vals := make([]int64, len(keys))
		for i, k := range keys {
			vals[i] = newIdents[k]
		}
		rows, err := tx.Query(ctx, sqlInsertIdentities, keys, vals)
		if err != nil {
			return res, err
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return res, err
		}
		if len(inserted) != len(keys) {
			return res, errRaced
		}
	}
	if len(identify) > 0 {
		ids := make([]int64, 0, len(identify))
		for id := range identify {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		users := make([]string, len(ids))
		for i, id := range ids {
			users[i] = identify[id]
		}
		if _, err := tx.Exec(ctx, sqlIdentifyContacts, ids, users); err != nil {
			return res, err
		}
	}
	for i, mg := range merges {
		mg[1] = real(mg[1])
		merges[i] = mg
		if err := mergeContact(ctx, tx, mg[0], mg[1]); err != nil {
			return res, err
		}
	}

	// 4. The events, once each, in (contact, message) order.
	order := make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(x, y int) bool {
		a, b := order[x], order[y]
		if contactOf[a] != contactOf[b] {
			return contactOf[a] < contactOf[b]
		}
		return msgs[a].MessageID < msgs[b].MessageID
	})
	n := len(msgs)
	var (
		cids  = make([]int64, n)
		mids  = make([]string, n)
		kinds = make([]string, n)
		names = make([]string, n)
		props = make([]string, n)
		ctxs  = make([]*string, n)
		times = make([]any, n)
	)
	for j, i := range order {
		m := &msgs[i]
		cids[j], mids[j], kinds[j], names[j], props[j], times[j] = contactOf[i], m.MessageID, m.Kind, m.Name, string(m.Properties), m.Timestamp
		if len(m.Context) > 0 {
			c := string(m.Context)
			ctxs[j] = &c
		}
	}
	rows, err = tx.Query(ctx, sqlInsertEvents, cids, mids, kinds, names, props, ctxs, times)
	if err != nil {
		return res, err
	}
	type key struct {
		c int64
		m string
	}
	fresh := map[key]bool{}
	var mid string
	_, err = pgx.ForEachRow(rows, []any{&cid, &mid}, func() error {
		fresh[key{cid, mid}] = true
		return nil
	})
	if err != nil {
		return res, err
	}
	res.Stored = len(fresh)
	res.Duplicates = n - len(fresh)

	// 5. Traits of new identify calls, merged in message order per contact.
	patches := map[int64]map[string]json.RawMessage{}
	emails := map[int64]string{}
	userIDs := map[int64]string{}
	touched := map[int64]bool{}
	res.Latest = map[int64]*ingest.Message{}
	res.Names = map[int64][]string{}
	for i := range msgs {
		m := &msgs[i]
		c := contactOf[i]
		if !fresh[key{c, m.MessageID}] {
			continue
		}
		touched[c] = true
		if l := res.Latest[c]; l == nil || !m.Timestamp.Before(l.Timestamp) {
			res.Latest[c] = m
		}
		res.Names[c] = append(res.Names[c], m.Name)
		if m.Kind != ingest.KindIdentify {
			continue
		}
		var t map[string]json.RawMessage
		if err := json.Unmarshal(m.Traits, &t); err != nil {
			continue
		}
		p := patches[c]
		if p == nil {
			p = map[string]json.RawMessage{}
			patches[c] = p
		}
		for k, v := range t {
			p[k] = v
		}
		if m.Email != "" {
			emails[c] = m.Email
		}
		if m.UserID != "" {
			userIDs[c] = m.UserID
		}
	}
	if len(patches) > 0 {
		ids := make([]int64, 0, len(patches))
		for id := range patches {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		traits := make([]string, len(ids))
		ems := make([]string, len(ids))
		uids := make([]string, len(ids))
		for i, id := range ids {
			b, _ := json.Marshal(patches[id])
			traits[i], ems[i], uids[i] = string(b), emails[id], userIDs[id]
		}
		if _, err := tx.Exec(ctx, sqlMergeTraits, ids, traits, ems, uids); err != nil {
			return res, err
		}
	}
	for _, mg := range merges {
		touched[mg[1]] = true
	}
	res.Contacts = make([]int64, 0, len(touched))
	for c := range touched {
		res.Contacts = append(res.Contacts, c)
	}
	slices.Sort(res.Contacts)
	return res, nil
}

// identityKeys returns the message's user and anonymous identity keys ("" if
// absent).
func identityKeys(m *ingest.Message) [2]string {
	var k [2]string
	if m.UserID != "" {
		k[0] = "u:" + m.UserID
	}
	if m.AnonymousID != "" {
		k[1] = "a:" + m.AnonymousID
	}
	return k
}
