package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/ingest"
)

const (
	// sqlStoreKnown stores, in one statement (one round trip, one commit),
	// the messages whose contact the identities already decide: a single
	// known id, or a known user id whose anonymous id needs no joining
	// (it is the same contact, or another identified contact's: shared
	// devices). It returns the positions (1-based) of the messages it
	// could not place, and of the events it stored with their contacts.
	sqlStoreKnown = `
WITH m AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::timestamptz[])
        WITH ORDINALITY AS m(uk, ak, mid, kind, name, props, ctx, ts, ord)
), k AS MATERIALIZED (
    -- One index lookup an id (with the array's size unknown, a join
    -- could hash whole tables); anonymous ids locked as in
    -- sqlResolveAnonymous.
    SELECT m.*,
        CASE WHEN m.uk <> '' THEN (SELECT i.contact_id FROM identities i WHERE i.identity = m.uk) END AS uc,
        CASE WHEN m.ak <> '' THEN (SELECT i.contact_id FROM identities i WHERE i.identity = m.ak FOR SHARE) END AS ac
    FROM m
), r AS (
    SELECT k.ord, k.mid, k.kind, k.name, k.props, k.ctx, k.ts,
        CASE
            WHEN k.uk = '' THEN k.ac
            WHEN k.uc IS NULL THEN NULL
            WHEN k.ak = '' OR k.ac = k.uc THEN k.uc
            WHEN k.ac IS NOT NULL
                AND (SELECT c.user_id IS NOT NULL FROM contacts c WHERE c.id = k.ac) THEN k.uc
        END AS cid
    FROM k
), ins AS (
    INSERT INTO events (contact_id, message_id, kind, name, properties, context, occurred_at)
    SELECT cid, mid, kind, name, props, ctx, ts FROM r WHERE cid IS NOT NULL ORDER BY cid, mid
    ON CONFLICT (contact_id, message_id) DO NOTHING
    RETURNING contact_id, message_id
), early AS (
    ` + sqlEarlierSet + `(SELECT cid, min(ts) FROM r WHERE cid IS NOT NULL AND ts < statement_timestamp() - interval '1 minute' GROUP BY cid)` + sqlEarlierWhere + `
)
SELECT
    (SELECT count(*) FROM ins),
    array_agg(r.ord) FILTER (WHERE r.cid IS NULL),
    array_agg(r.ord) FILTER (WHERE ins.contact_id IS NOT NULL),
    array_agg(r.cid) FILTER (WHERE ins.contact_id IS NOT NULL)
FROM r LEFT JOIN ins ON ins.contact_id = r.cid AND ins.message_id = r.mid`

	// sqlResolveIdentities finds whom identities belong to now. Anonymous
	// ids are locked (FOR SHARE) until the transaction ends: a merge moves
	// an anonymous id (queueMerge updates its identities first), so it
	// waits for transactions storing events under the old contact, then
	// moves those events too; or they wait for it and see the new contact.
	//
	// One index lookup an identity: with the array's size unknown, a
	// generic plan would otherwise hash whole tables. OFFSET 0 keeps the
	// LATERAL subquery from being flattened into a join, which the
	// planner did hash: the generic plan made while identities was empty
	// (cached for the connection's life, and never replaced without an
	// ANALYZE) read the whole table for every batch. sqlResolveAnonymous
	// is not flattened either (FOR SHARE).
	sqlResolveIdentities = `
SELECT k.k, i.contact_id, (SELECT c.user_id IS NOT NULL FROM contacts c WHERE c.id = i.contact_id)
FROM unnest($1::text[]) AS k(k)
CROSS JOIN LATERAL (SELECT i.contact_id FROM identities i WHERE i.identity = k.k OFFSET 0) i`

	// sqlLiveContacts returns which of the contacts $1 (cached users'
	// contacts) still exist: erasing a contact deletes it with its
	// identities, and a user id's contact never changes otherwise (merges
	// move anonymous contacts only).
	//
	// coalesce(c.merged_into, 0) = 0 rather than c.merged_into IS NULL:
	// the latter matches the predicate of contacts' partial indexes
	// (migration 009), and while the table has no statistics (a database
	// filling up, never analysed) the planner ANDs a scan of a whole
	// partial index with the primary-key probes: O(contacts) a batch,
	// which took ingestion from ~40,000 to ~1,700 events/s.
	sqlLiveContacts = `SELECT c.id FROM contacts c WHERE c.id = ANY($1::bigint[]) AND coalesce(c.merged_into, 0) = 0`

	sqlResolveAnonymous = `
SELECT k.k, i.contact_id, (SELECT c.user_id IS NOT NULL FROM contacts c WHERE c.id = i.contact_id)
FROM unnest($1::text[]) AS k(k)
CROSS JOIN LATERAL (SELECT i.contact_id FROM identities i WHERE i.identity = k.k FOR SHARE) i`

	// sqlClaimIdentities draws contact ids for the new contacts ($1, their
	// placeholders) and maps the new identities to them or to existing
	// contacts. An identity another transaction created first is skipped
	// (after waiting for that transaction to end), so fewer rows come back
	// and the caller starts again knowing it.
	sqlClaimIdentities = `
WITH drawn AS MATERIALIZED (
    SELECT p, nextval('contact_id_seq') AS id FROM unnest($1::bigint[]) AS p
)
INSERT INTO identities (identity, contact_id)
SELECT t.k, coalesce(d.id, t.c) FROM unnest($2::text[], $3::bigint[]) AS t(k, c) LEFT JOIN drawn d ON d.p = t.c
ORDER BY t.k
ON CONFLICT (identity) DO NOTHING
RETURNING identity, contact_id`

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

	// sqlInsertEvents stores events once each and returns how many it
	// stored and the positions (1-based) of the new ones.
	sqlInsertEvents = `
WITH m AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::timestamptz[])
        WITH ORDINALITY AS m(cid, mid, kind, name, props, ctx, ts, ord)
), ins AS (
    INSERT INTO events (contact_id, message_id, kind, name, properties, context, occurred_at)
    SELECT cid, mid, kind, name, props, ctx, ts FROM m ORDER BY cid, mid
    ON CONFLICT (contact_id, message_id) DO NOTHING
    RETURNING contact_id, message_id
)
SELECT (SELECT count(*) FROM ins), array_agg(m.ord)
FROM m JOIN ins ON ins.contact_id = m.cid AND ins.message_id = m.mid`

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

const mergeStatements = 5

// Ingest implements ingest.Store: it resolves each message's contact
// (creating contacts for new ids, joining an anonymous id to a user id,
// merging an anonymous contact into the identified one), stores the events
// once each, and merges identify traits.
//
// Messages whose contact is already known (the steady state: returning
// users) are stored by one statement in its own implicit transaction; the
// others (new ids, joins, identify traits) in one transaction after it.
// Either part may commit without the other when the database fails midway;
// a client retrying the whole request then stores only what is missing.
func (s *Store) Ingest(ctx context.Context, msgs []ingest.Message) (ingest.Result, error) {
	res, rest, err := s.storeKnown(ctx, msgs)
	if err != nil {
		return ingest.Result{}, translate(err, "storing events")
	}
	if len(rest) == 0 {
		return res, nil
	}
	slow := make([]ingest.Message, len(rest))
	for i, j := range rest {
		slow[i] = msgs[j]
	}
	var (
		sres   ingest.Result
		merged map[int64]int64
	)
	err = s.ingestTx(ctx, "storing events", slow, ingestOptions{users: s.users}, func(r ingest.Result, m map[int64]int64) { sres, merged = r, m })
	if err != nil {
		return ingest.Result{}, err
	}
	for i := range sres.Refused {
		sres.Refused[i].Index = rest[sres.Refused[i].Index]
	}
	return combine(res, sres, merged), nil
}

// storeKnown stores the messages whose contact the identities already
// decide (a single known id, or a known user id whose anonymous id needs
// no joining: the same contact, or another identified contact's, as on
// shared devices) and returns what it stored and the positions of the
// messages left for ingestTx.
//
// It resolves the identities and COPYs the events in one transaction (the
// cheapest way into the table); when one of them is stored already (a
// client's retry), COPY fails and sqlStoreKnown stores them once each
// instead.
func (s *Store) storeKnown(ctx context.Context, msgs []ingest.Message) (ingest.Result, []int, error) {
	var (
		eligible = make([]int, 0, len(msgs))
		rest     []int
	)
	for i := range msgs {
		if msgs[i].Kind == ingest.KindIdentify {
			rest = append(rest, i)
		} else {
			eligible = append(eligible, i)
		}
	}
	if len(eligible) == 0 {
		return ingest.Result{}, rest, nil
	}
	var (
		res ingest.Result
		err error
	)
	// A few events take sqlStoreKnown's single round trip; more, COPY.
	if len(eligible) >= copyMin {
		for attempt := 0; attempt < 5; attempt++ {
			var retried []int
			res, retried, err = s.copyKnown(ctx, msgs, eligible)
			if err == nil {
				rest = append(rest, retried...)
				slices.Sort(rest)
				return res, rest, nil
			}
			if errors.Is(err, errStored) || !retryable(err) {
				break
			}
		}
		if !errors.Is(err, errStored) {
			return ingest.Result{}, nil, err
		}
	}
	res, retried, err := s.insertKnown(ctx, msgs, eligible)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	rest = append(rest, retried...)
	slices.Sort(rest)
	return res, rest, nil
}

// copyMin is the smallest batch storeKnown COPYs; smaller ones take
// sqlStoreKnown's single round trip.
const copyMin = 64

// errStored means COPY met an event stored already.
var errStored = errors.New("an event is stored already")

// copyKnown is storeKnown's COPY: it returns errStored if an event is
// stored already, having stored nothing.
func (s *Store) copyKnown(ctx context.Context, msgs []ingest.Message, eligible []int) (ingest.Result, []int, error) {
	var users, anons []string
	seen := make(map[string]struct{}, 2*len(eligible))
	// User ids this process has resolved before: only their contacts'
	// existence is checked (see userCache).
	var (
		hits  map[string]int64
		check []int64
	)
	if s.users != nil {
		hits = make(map[string]int64, len(eligible))
	}
	for _, i := range eligible {
		for j, k := range identityKeys(&msgs[i]) {
			if k == "" {
				continue
			}
			if _, ok := seen[k]; ok {
				continue
			}
			seen[k] = struct{}{}
			if j == 0 {
				if c, ok := s.users.get(k); ok {
					hits[k] = c
					check = append(check, c)
				} else {
					users = append(users, k)
				}
			} else {
				anons = append(anons, k)
			}
		}
	}
	sort.Strings(anons) // one lock order
	slices.Sort(check)
	check = slices.Compact(check)
	t, err := s.begin(ctx)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	defer t.close()
	known := make(map[string]identityInfo, len(seen))
	live, err := t.resolve(ctx, users, anons, check, known)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	var learned []cached // user ids resolved here, cached once committed
	if s.users != nil {
		for _, k := range users {
			if info, ok := known[k]; ok {
				learned = append(learned, cached{k, info.contact})
			}
		}
	}
	// A cached user whose contact is gone (erased, by any process) is
	// forgotten; its messages go to ingestTx, which looks it up afresh.
	var stale []string
	for k, c := range hits {
		if live[c] {
			known[k] = identityInfo{c, true}
		} else {
			stale = append(stale, k)
		}
	}
	s.users.drop(stale)
	// As sqlStoreKnown's CASE.
	var (
		rest   []int
		placed = make([]int, 0, len(eligible))
		cids   = make([]int64, 0, len(eligible))
	)
	for _, i := range eligible {
		k := identityKeys(&msgs[i])
		u, uok := known[k[0]]
		a, aok := known[k[1]]
		var cid int64
		switch {
		case k[0] == "":
			if aok {
				cid = a.contact
			}
		case !uok:
		case k[1] == "" || aok && a.contact == u.contact:
			cid = u.contact
		case aok && a.identified:
			cid = u.contact
		}
		if cid == 0 {
			rest = append(rest, i)
			continue
		}
		placed, cids = append(placed, i), append(cids, cid)
	}
	// In (contact, messageId) order: locality in the primary key, and one
	// lock order for all writers. The same message twice in the batch is
	// stored once.
	order := make([]int, len(placed))
	for j := range order {
		order[j] = j
	}
	slices.SortFunc(order, func(x, y int) int {
		if cids[x] != cids[y] {
			return cmp.Compare(cids[x], cids[y])
		}
		if c := strings.Compare(msgs[placed[x]].MessageID, msgs[placed[y]].MessageID); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	keep := order[:0]
	for j, o := range order {
		if j > 0 {
			p := order[j-1]
			if cids[p] == cids[o] && msgs[placed[p]].MessageID == msgs[placed[o]].MessageID {
				continue
			}
		}
		keep = append(keep, o)
	}
	if len(keep) > 0 {
		row := make([]any, len(eventColumns))
		j := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if j == len(keep) {
				return nil, nil
			}
			o := keep[j]
			m := &msgs[placed[o]]
			row[0], row[1], row[2], row[3], row[4], row[6] = cids[o], m.MessageID, m.Kind, m.Name, m.Properties, m.Timestamp
			if len(m.Context) > 0 {
				row[5] = m.Context
			} else {
				row[5] = nil
			}
			j++
			return row, nil
		})
		if err := t.copyFrom(ctx, src); err != nil {
			var pg *pgconn.PgError
			if errors.As(err, &pg) && pg.Code == "23505" {
				return ingest.Result{}, nil, errStored
			}
			return ingest.Result{}, nil, err
		}
	}
	err = t.run(ctx, true, func(*pgx.Batch) {}, func(pgx.BatchResults) error { return nil })
	if err != nil {
		return ingest.Result{}, nil, err
	}
	s.users.add(learned)
	fresh := make([]int, len(keep))
	fc := make([]int64, len(keep))
	for j, o := range keep {
		fresh[j], fc[j] = placed[o], cids[o]
	}
	return buildResult(msgs, fresh, fc, len(keep), len(placed)), rest, nil
}

// insertKnown is storeKnown with sqlStoreKnown, for batches holding events
// stored already.
func (s *Store) insertKnown(ctx context.Context, msgs []ingest.Message, eligible []int) (ingest.Result, []int, error) {
	n := len(eligible)
	uks, aks := make([]string, n), make([]string, n)
	for j, i := range eligible {
		k := identityKeys(&msgs[i])
		uks[j], aks[j] = k[0], k[1]
	}
	ev := newEventArrays(msgs, eligible)
	var (
		stored           int64
		unplaced, freshs []int64
		cids             []int64
		rest             []int
	)
	err := s.db.QueryRow(ctx, sqlStoreKnown, uks, aks, ev.mids, ev.kinds, ev.names, ev.props, ev.ctxs, ev.times).Scan(&stored, &unplaced, &freshs, &cids)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	for _, o := range unplaced {
		rest = append(rest, eligible[o-1])
	}
	idx := make([]int, len(freshs))
	for j, o := range freshs {
		idx[j] = eligible[o-1]
	}
	return buildResult(msgs, idx, cids, int(stored), len(eligible)-len(unplaced)), rest, nil
}

// eventArrays are events as the arrays of the statements that insert
// them (sqlStoreKnown, sqlInsertEvents).
type eventArrays struct {
	mids, kinds, names []string
	props, ctxs        []json.RawMessage
	times              []time.Time
}

// newEventArrays returns the arrays of msgs at positions at (all of them
// if at is nil).
func newEventArrays(msgs []ingest.Message, at []int) eventArrays {
	n := len(msgs)
	if at != nil {
		n = len(at)
	}
	c := eventArrays{
		mids: make([]string, n), kinds: make([]string, n), names: make([]string, n),
		props: make([]json.RawMessage, n), ctxs: make([]json.RawMessage, n), times: make([]time.Time, n),
	}
	for j := 0; j < n; j++ {
		i := j
		if at != nil {
			i = at[j]
		}
		m := &msgs[i]
		c.mids[j], c.kinds[j], c.names[j], c.props[j], c.times[j] = m.MessageID, m.Kind, m.Name, m.Properties, m.Timestamp
		if len(m.Context) > 0 {
			c.ctxs[j] = m.Context
		}
	}
	return c
}

// buildResult reports the new events: fresh are their positions in msgs
// (a message repeated within the batch may appear more than once), cids
// their contacts, stored the number of rows inserted, placed the number of
// messages that were tried.
func buildResult(msgs []ingest.Message, fresh []int, cids []int64, stored, placed int) ingest.Result {
	res := ingest.Result{Stored: stored, Duplicates: placed - stored}
	if stored != len(fresh) {
		// The same message twice in one batch: report it once.
		type key struct {
			c int64
			m string
		}
		seen := make(map[key]bool, len(fresh))
		var f2 []int
		var c2 []int64
		for j, i := range fresh {
			k := key{cids[j], msgs[i].MessageID}
			if !seen[k] {
				seen[k] = true
				f2, c2 = append(f2, i), append(c2, cids[j])
			}
		}
		fresh, cids = f2, c2
	}
	// In message order, so that names come in the order sent.
	order := make([]int, len(fresh))
	for j := range order {
		order[j] = j
	}
	sort.Slice(order, func(x, y int) bool { return fresh[order[x]] < fresh[order[y]] })
	res.Latest = make(map[int64]*ingest.Message, len(fresh))
	res.Names = make(map[int64][]string, len(fresh))
	for _, j := range order {
		m, c := &msgs[fresh[j]], cids[j]
		if l := res.Latest[c]; l == nil {
			res.Contacts = append(res.Contacts, c)
			res.Latest[c] = m
		} else if !m.Timestamp.Before(l.Timestamp) {
			res.Latest[c] = m
		}
		res.Names[c] = append(res.Names[c], m.Name)
	}
	slices.Sort(res.Contacts)
	return res
}

// combine adds b (stored after a) to a; merged maps contacts b merged away
// to the contacts they were merged into.
func combine(a, b ingest.Result, merged map[int64]int64) ingest.Result {
	out := ingest.Result{
		Stored:     a.Stored + b.Stored,
		Duplicates: a.Duplicates + b.Duplicates,
		Latest:     make(map[int64]*ingest.Message, len(a.Latest)+len(b.Latest)),
		Names:      make(map[int64][]string, len(a.Names)+len(b.Names)),
	}
	add := func(r ingest.Result) {
		for _, c0 := range r.Contacts {
			c := c0
			for {
				to, ok := merged[c]
				if !ok {
					break
				}
				c = to
			}
			if _, ok := out.Names[c]; !ok {
				out.Names[c] = nil
				out.Contacts = append(out.Contacts, c)
			}
			if l, m := out.Latest[c], r.Latest[c0]; m != nil && (l == nil || !m.Timestamp.Before(l.Timestamp)) {
				out.Latest[c] = m
			}
			out.Names[c] = append(out.Names[c], r.Names[c0]...)
		}
	}
	add(a)
	add(b)
	slices.Sort(out.Contacts)
	out.Refused = append(a.Refused, b.Refused...)
	return out
}

// txn is one ingest transaction. On a pool it holds a connection of its
// own and sends BEGIN and COMMIT in the round trips of the statements next
// to them; on anything else (a test's transaction) it nests with Begin.
type txn struct {
	conn  *pgxpool.Conn
	tx    pgx.Tx
	begun bool
	ended bool
}

func (s *Store) begin(ctx context.Context) (*txn, error) {
	if p, ok := s.db.(*pgxpool.Pool); ok {
		c, err := p.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		return &txn{conn: c}, nil
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &txn{tx: tx}, nil
}

// run sends the statements queue queues in one round trip (with BEGIN
// before them, the first time, and COMMIT after them if commit), and reads
// their results with read.
func (t *txn) run(ctx context.Context, commit bool, queue func(b *pgx.Batch), read func(br pgx.BatchResults) error) error {
	b := &pgx.Batch{}
	lead := 0
	if t.conn != nil && !t.begun {
		// Every statement of an ingest transaction reads the rows of
		// the ids it lists: no plan should hash a whole table to join
		// it with a list (merging traits into contacts did, on a table
		// whose statistics lagged).
		b.Queue("begin")
		b.Queue(sqlSeqScanOff)
		lead = 2
	}
	t.begun = true
	queue(b)
	if commit && t.conn != nil {
		b.Queue("commit")
	}
	if b.Len() == 0 {
		if commit {
			t.ended = true
			return t.tx.Commit(ctx)
		}
		return nil
	}
	var br pgx.BatchResults
	if t.conn != nil {
		br = t.conn.SendBatch(ctx, b)
	} else {
		br = t.tx.SendBatch(ctx, b)
	}
	err := func() error {
		for i := 0; i < lead; i++ {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if err := read(br); err != nil {
			return err
		}
		if commit && t.conn != nil {
			if _, err := br.Exec(); err != nil {
				return err
			}
			t.ended = true
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && commit && t.tx != nil {
		err = t.tx.Commit(ctx)
		t.ended = true
	}
	return err
}

// close rolls back what was not committed and gives the connection back.
func (t *txn) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if t.conn != nil {
		if t.begun && !t.ended {
			// A connection left inside a transaction is destroyed by the
			// pool on release, so a failed rollback is harmless.
			_, _ = t.conn.Exec(ctx, "rollback")
		}
		t.conn.Release()
		return
	}
	if !t.ended {
		_ = t.tx.Rollback(ctx)
	}
}

// resolve finds, in one round trip, whom the user identities users and
// the anonymous identities anons (sorted: one lock order; locked, see
// sqlResolveIdentities) belong to now, into known, and which of the
// contacts check (cached users') still exist.
func (t *txn) resolve(ctx context.Context, users, anons []string, check []int64, known map[string]identityInfo) (map[int64]bool, error) {
	live := make(map[int64]bool, len(check))
	if len(users)+len(anons)+len(check) == 0 {
		return live, nil
	}
	read := func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
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
		return err
	}
	err := t.run(ctx, false, func(b *pgx.Batch) {
		if len(users) > 0 {
			b.Queue(sqlResolveIdentities, users)
		}
		if len(anons) > 0 {
			b.Queue(sqlResolveAnonymous, anons)
		}
		if len(check) > 0 {
			b.Queue(sqlLiveContacts, check)
		}
	}, func(br pgx.BatchResults) error {
		if len(users) > 0 {
			if err := read(br); err != nil {
				return err
			}
		}
		if len(anons) > 0 {
			if err := read(br); err != nil {
				return err
			}
		}
		if len(check) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			var id int64
			_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
				live[id] = true
				return nil
			})
			return err
		}
		return nil
	})
	return live, err
}

type identityInfo struct {
	contact    int64
	identified bool // the contact has a user id
}

// errLost means another transaction created one of the identities this
// one meant to create: start again, knowing it.
var errLost = errors.New("identity created concurrently")

// ingestTx stores msgs in one transaction, starting again when it loses a
// race to create an identity (it waits for the winner to commit, so the
// next attempt finds it) or deadlocks. done gets the result and the
// contacts merged away.
func (s *Store) ingestTx(ctx context.Context, doing string, msgs []ingest.Message, o ingestOptions, done func(ingest.Result, map[int64]int64)) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		var t *txn
		t, err = s.begin(ctx)
		if err != nil {
			break
		}
		var (
			res    ingest.Result
			merged map[int64]int64
		)
		var (
			learned []cached
			since   sinceList
		)
		if o.cache != nil || o.users != nil {
			o.learned = &learned
		}
		if o.cache != nil {
			o.since = &since
		}
		res, merged, err = ingestIn(ctx, t, msgs, o)
		t.close()
		if err == nil {
			if o.cache != nil {
				o.cache.add(learned)
				o.cache.existsFrom(since.ids, since.firsts)
			}
			o.users.add(learned)
			done(res, merged)
			return nil
		}
		if !errors.Is(err, errLost) && !retryable(err) {
			break
		}
	}
	return translate(err, doing)
}

// plan is how a batch maps to contacts, decided from the identities known.
type plan struct {
	contactOf []int64 // per message; negative: a new contact's placeholder
	created   []newContact
	newIdents map[string]int64 // identity → contact (or placeholder)
	identify  map[int64]string // existing anonymous contact → user id it now has
	merges    [][2]int64       // anonymous contact → identified contact
	merged    map[int64]int64  // contact or placeholder → the one it was folded into
	known     map[string]identityInfo
}

type newContact struct {
	user, anon string
	dead       bool // folded into another contact of the batch
}

// decide maps each message to its contact, in order. New contacts get
// placeholder ids (negative) until ids are drawn from the sequence.
func decide(msgs []ingest.Message, known map[string]identityInfo) *plan {
	p := &plan{
		contactOf: make([]int64, len(msgs)),
		newIdents: map[string]int64{},
		identify:  map[int64]string{},
		merged:    map[int64]int64{},
		known:     known,
	}
	nextHolder := int64(-1)
	lookup := func(id string) (identityInfo, bool) {
		info, ok := known[id]
		if ok {
			if to, m := p.merged[info.contact]; m {
				info.contact = to
			}
		}
		return info, ok
	}
	for i := range msgs {
		m := &msgs[i]
		keys := identityKeys(m)
		u, a := keys[0], keys[1]
		ui, uok := lookup(u)
		ai, aok := lookup(a)
		switch {
		case u != "" && uok:
			p.contactOf[i] = ui.contact
			if a != "" && !aok {
				known[a] = identityInfo{ui.contact, true}
				p.newIdents[a] = ui.contact
			} else if a != "" && ai.contact != ui.contact && !ai.identified {
				// The anonymous visitor turned out to be this user.
				if ai.contact > 0 {
					p.merges = append(p.merges, [2]int64{ai.contact, ui.contact})
				} else {
					// Created earlier in this batch: fold it in instead.
					p.created[-ai.contact-1].dead = true
					p.newIdents[a] = ui.contact
				}
				p.merged[ai.contact] = ui.contact
				known[a] = identityInfo{ui.contact, true}
			}
		case u != "" && aok && !ai.identified:
			// An anonymous contact becomes identified.
			p.contactOf[i] = ai.contact
			known[u] = identityInfo{ai.contact, true}
			p.newIdents[u] = ai.contact
			if ai.contact > 0 {
				p.identify[ai.contact] = m.UserID
			} else {
				p.created[-ai.contact-1].user = m.UserID
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
			p.created = append(p.created, newContact{user: m.UserID})
			known[u] = identityInfo{id, true}
			p.newIdents[u] = id
			if a != "" && !aok {
				p.created[len(p.created)-1].anon = m.AnonymousID
				known[a] = identityInfo{id, true}
				p.newIdents[a] = id
			}
			p.contactOf[i] = id
		case aok:
			p.contactOf[i] = ai.contact
		default:
			id := nextHolder
			nextHolder--
			p.created = append(p.created, newContact{anon: m.AnonymousID})
			known[a] = identityInfo{id, false}
			p.newIdents[a] = id
			p.contactOf[i] = id
		}
	}
	return p
}

// follow returns the contact (or placeholder) id ends up as after the
// batch's folds and merges (an event of an anonymous contact merged later
// in the batch goes to the contact it is merged into).
func (p *plan) follow(id int64) int64 {
	for {
		to, ok := p.merged[id]
		if !ok {
			return id
		}
		id = to
	}
}

// ingestOptions change how ingestIn loads: imports COPY the events and
// keep the user ids they have seen.
type ingestOptions struct {
	copy bool
	// contactsOnly: create the contacts and identities the messages need,
	// join and merge as they say, and commit, storing no event.
	contactsOnly bool
	cache        *identityCache
	// tally: the result has counts and refusals only (no contacts, names
	// or latest events: an import's, which fires no triggers).
	tally   bool
	learned *[]cached  // user ids resolved, for the cache
	users   *userCache // learns the user ids resolved (never read here)
	// since: the contacts and the instants they exist from, as written
	// here, for the cache once committed.
	since *sinceList
}

// sinceList are contacts with the instant each exists from.
type sinceList struct {
	ids    []int64
	firsts []time.Time
}

func ingestIn(ctx context.Context, t *txn, msgs []ingest.Message, o ingestOptions) (ingest.Result, map[int64]int64, error) {
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
	if o.cache != nil {
		idents = o.cache.fill(idents, known)
	}
	var users, anons []string
	for _, k := range idents {
		if strings.HasPrefix(k, "a:") {
			anons = append(anons, k)
		} else {
			users = append(users, k)
		}
	}
	sort.Strings(anons) // one lock order
	if _, err := t.resolve(ctx, users, anons, nil, known); err != nil {
		return res, nil, err
	}
	var err error

	// 2. Decide each message's contact in order.
	p := decide(msgs, known)

	// 3. Claim the new identities, drawing ids for the new contacts.
	drawn := map[int64]int64{} // placeholder → drawn id
	if len(p.newIdents) > 0 {
		keys := make([]string, 0, len(p.newIdents))
		for k := range p.newIdents {
			keys = append(keys, k)
		}
		sort.Strings(keys) // one lock order for all writers
		vals := make([]int64, len(keys))
		var holders []int64
		held := make(map[int64]bool)
		for i, k := range keys {
			vals[i] = p.follow(p.newIdents[k])
			if vals[i] < 0 && !held[vals[i]] {
				held[vals[i]] = true
				holders = append(holders, vals[i])
			}
		}
		byKey := make(map[string]int64, len(keys))
		for i, k := range keys {
			byKey[k] = vals[i]
		}
		got := 0
		err := t.run(ctx, false, func(b *pgx.Batch) {
			b.Queue(sqlClaimIdentities, holders, keys, vals)
		}, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			var (
				k string
				c int64
			)
			_, err = pgx.ForEachRow(rows, []any{&k, &c}, func() error {
				got++
				if v := byKey[k]; v < 0 {
					drawn[v] = c
				}
				return nil
			})
			return err
		})
		if err != nil {
			return res, nil, err
		}
		if got != len(keys) {
			return res, nil, errLost
		}
	}
	toReal := func(id int64) int64 {
		id = p.follow(id)
		if id < 0 {
			return drawn[id]
		}
		return id
	}
	contactOf := p.contactOf
	for i := range contactOf {
		contactOf[i] = toReal(contactOf[i])
	}
	merged := map[int64]int64{}
	for i, mg := range p.merges {
		mg[1] = toReal(mg[1])
		p.merges[i] = mg
		merged[mg[0]] = mg[1]
	}

	// 4. In one round trip: the new contacts, identified and merged
	// contacts, the events (once each); and COMMIT if no traits follow.
	hasIdentify := false
	for i := range msgs {
		if msgs[i].Kind == ingest.KindIdentify {
			hasIdentify = true
			break
		}
	}
	var (
		stored int64
		fresh  []int64
	)
	n := len(msgs)
	// sqlInsertEvents' statement for the messages at positions at (all
	// if nil), with the events as its arrays: built only when queued (a
	// COPY needs them only if it meets an event stored already).
	insertEvents := func(b *pgx.Batch, at []int) {
		cids := contactOf
		if at != nil {
			cids = make([]int64, len(at))
			for j, i := range at {
				cids[j] = contactOf[i]
			}
		}
		ev := newEventArrays(msgs, at)
		b.Queue(sqlInsertEvents, cids, ev.mids, ev.kinds, ev.names, ev.props, ev.ctxs, ev.times)
	}
	err = t.run(ctx, !hasIdentify && !o.copy || o.contactsOnly, func(b *pgx.Batch) {
		if len(p.created) > 0 {
			// A contact exists from its earliest event (imports are not
			// in time order).
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
				firsts []time.Time
			)
			for i, c := range p.created {
				if c.dead {
					continue
				}
				id := drawn[int64(-i-1)]
				live = append(live, id)
				users, anons, firsts = append(users, c.user), append(anons, c.anon), append(firsts, earliest[id])
			}
			if len(live) > 0 {
				b.Queue(sqlInsertContacts, live, users, anons, firsts)
				if o.since != nil {
					o.since.ids, o.since.firsts = append(o.since.ids, live...), append(o.since.firsts, firsts...)
				}
			}
		}
		if len(p.identify) > 0 {
			ids := make([]int64, 0, len(p.identify))
			for id := range p.identify {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			users := make([]string, len(ids))
			for i, id := range ids {
				users[i] = p.identify[id]
			}
			b.Queue(sqlIdentifyContacts, ids, users)
		}
		for _, mg := range p.merges {
			queueMerge(b, mg[0], mg[1])
		}
		if !o.contactsOnly {
			ids, firsts := earliest(msgs, contactOf, drawn)
			if o.cache != nil {
				// An import: only contacts it has not seen exist from
				// these messages' times already.
				ids, firsts = o.cache.older(ids, firsts)
				if o.since != nil {
					o.since.ids, o.since.firsts = append(o.since.ids, ids...), append(o.since.firsts, firsts...)
				}
			}
			b.Queue(sqlEarlierContacts, ids, firsts)
		}
		switch {
		case o.contactsOnly:
		case o.copy:
			b.Queue("savepoint copy_events")
		default:
			insertEvents(b, nil)
		}
	}, func(br pgx.BatchResults) error {
		if len(p.created) > 0 {
			live := 0
			for _, c := range p.created {
				if !c.dead {
					live++
				}
			}
			if live > 0 {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
		}
		if len(p.identify) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for _, mg := range p.merges {
			for i := 0; i < mergeStatements; i++ {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("merging contact %d into %d: %w", mg[0], mg[1], err)
				}
			}
		}
		if o.contactsOnly {
			return nil
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		if o.copy {
			_, err := br.Exec()
			return err
		}
		return br.QueryRow().Scan(&stored, &fresh)
	})
	if err == nil && o.copy && !o.contactsOnly {
		stored, fresh, err = t.copyEvents(ctx, msgs, contactOf, insertEvents)
		if err == nil && !hasIdentify {
			err = t.run(ctx, true, func(*pgx.Batch) {}, func(pgx.BatchResults) error { return nil })
		}
	}
	if err != nil {
		return res, nil, err
	}
	if o.learned != nil {
		// Cached by the caller once committed.
		for k, info := range known {
			if len(k) > 2 && k[:2] == "u:" {
				*o.learned = append(*o.learned, cached{k, toReal(info.contact)})
			}
		}
	}
	if o.contactsOnly {
		return res, merged, nil
	}
	idx := make([]int, len(fresh))
	cids := make([]int64, len(fresh))
	for j, o := range fresh {
		idx[j] = int(o - 1)
		cids[j] = contactOf[o-1]
	}
	result := func(idx []int, cids []int64, stored, placed int) ingest.Result {
		if o.tally {
			return ingest.Result{Stored: stored, Duplicates: placed - stored}
		}
		res := buildResult(msgs, idx, cids, stored, placed)
		for _, mg := range p.merges {
			if _, ok := res.Names[mg[1]]; !ok {
				res.Names[mg[1]] = nil
				res.Contacts = append(res.Contacts, mg[1])
			}
		}
		slices.Sort(res.Contacts)
		return res
	}
	res = result(idx, cids, int(stored), n)
	if !hasIdentify {
		return res, merged, nil
	}

	// 5. Traits of new identify calls, merged in message order per
	// contact; then COMMIT, in the same round trip.
	isFresh := make([]bool, n)
	for _, i := range idx {
		isFresh[i] = true
	}
	// A contact's patch is its one identify call's traits as sent (most
	// contacts of a chunk, and all of a contacts file's), or several
	// calls' merged.
	type patch struct {
		traits      json.RawMessage
		merged      map[string]json.RawMessage // several calls: later wins
		email, user string
	}
	patches := map[int64]*patch{}
	var identifies []int // the fresh identify messages
	for i := range msgs {
		m := &msgs[i]
		if !isFresh[i] || m.Kind != ingest.KindIdentify {
			continue
		}
		identifies = append(identifies, i)
		c := contactOf[i]
		pt := patches[c]
		switch {
		case pt == nil:
			tr := m.Traits
			if string(tr) == "null" {
				tr = json.RawMessage("{}")
			}
			if len(tr) == 0 || tr[0] != '{' || !json.Valid(tr) {
				continue
			}
			pt = &patch{traits: tr}
			patches[c] = pt
		default:
			var tr map[string]json.RawMessage
			if err := json.Unmarshal(m.Traits, &tr); err != nil {
				continue
			}
			if pt.merged == nil {
				pt.merged = map[string]json.RawMessage{}
				if err := json.Unmarshal(pt.traits, &pt.merged); err != nil {
					return res, nil, fmt.Errorf("merging traits: %w", err)
				}
			}
			for k, v := range tr {
				pt.merged[k] = v
			}
		}
		if m.Email != "" {
			pt.email = m.Email
		}
		if m.UserID != "" {
			pt.user = m.UserID
		}
	}
	var refusedContacts []int64
	err = t.run(ctx, true, func(b *pgx.Batch) {
		if len(patches) == 0 {
			return
		}
		ids := make([]int64, 0, len(patches))
		for id := range patches {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		traits := make([]json.RawMessage, len(ids))
		ems := make([]string, len(ids))
		uids := make([]string, len(ids))
		for i, id := range ids {
			pt := patches[id]
			traits[i], ems[i], uids[i] = pt.traits, pt.email, pt.user
			if pt.merged != nil {
				traits[i], _ = json.Marshal(pt.merged)
			}
		}
		icids := make([]int64, len(identifies))
		imids := make([]string, len(identifies))
		for j, i := range identifies {
			icids[j], imids[j] = contactOf[i], msgs[i].MessageID
		}
		b.Queue(sqlMergeTraits, ids, traits, ems, uids, ingest.MaxTraitBytes, ingest.MaxTraitKeys, icids, imids)
	}, func(br pgx.BatchResults) error {
		if len(patches) == 0 {
			return nil
		}
		return br.QueryRow().Scan(&refusedContacts)
	})
	if err != nil {
		return res, nil, err
	}
	if len(refusedContacts) == 0 {
		return res, merged, nil
	}
	// The refused contacts' identify calls stored nothing: report them
	// refused, and the rest as stored.
	refusedContact := make(map[int64]bool, len(refusedContacts))
	for _, c := range refusedContacts {
		refusedContact[c] = true
	}
	refused := map[int]bool{}
	for _, i := range identifies {
		if refusedContact[contactOf[i]] {
			refused[i] = true
			res.Refused = append(res.Refused, ingest.FieldError{Index: i, Field: "traits",
				Msg: fmt.Sprintf("the contact's traits would be over %d KB or %d keys: refused, the stored traits stay as they were", ingest.MaxTraitBytes>>10, ingest.MaxTraitKeys)})
		}
	}
	// A stored event is one (contact, messageId).
	type eventKey struct {
		contact int64
		message string
	}
	var (
		idx2  []int
		cids2 []int64
		taken = map[eventKey]bool{}
	)
	for j, i := range idx {
		if !refused[i] {
			idx2, cids2 = append(idx2, i), append(cids2, cids[j])
		} else {
			taken[eventKey{cids[j], msgs[i].MessageID}] = true
		}
	}
	refusals := res.Refused
	res = result(idx2, cids2, int(stored)-len(taken), n-len(refused))
	res.Refused = refusals
	return res, merged, nil
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
