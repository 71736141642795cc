package store

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/ingest"
)

// Identities: whom user and anonymous ids belong to (identities), found
// and claimed for ingestion. Whom a message belongs to is decided by
// ingest.Decide from what is found here.

const (
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
SELECT k.k AS identity, i.contact_id, (SELECT c.user_id IS NOT NULL FROM contacts c WHERE c.id = i.contact_id) AS identified
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
SELECT k.k AS identity, i.contact_id, (SELECT c.user_id IS NOT NULL FROM contacts c WHERE c.id = i.contact_id) AS identified
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
)

// identityRow is a row of sqlResolveIdentities and sqlResolveAnonymous.
type identityRow struct {
	Identity   string `db:"identity"`
	ContactID  int64  `db:"contact_id"`
	Identified bool   `db:"identified"`
}

// claimedRow is a row of sqlClaimIdentities.
type claimedRow struct {
	Identity  string `db:"identity"`
	ContactID int64  `db:"contact_id"`
}

// resolve finds, in one round trip, whom the user identities users and
// the anonymous identities anons (sorted: one lock order; locked, see
// sqlResolveIdentities) belong to now, into known, and which of the
// contacts check (cached users') still exist.
func (t *txn) resolve(ctx context.Context, users, anons []string, check []int64, known map[string]ingest.Owner) (map[int64]bool, error) {
	live := make(map[int64]bool, len(check))
	if len(users)+len(anons)+len(check) == 0 {
		return live, nil
	}
	read := func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		owners, err := pgx.CollectRows(rows, pgx.RowToStructByName[identityRow])
		for _, o := range owners {
			known[o.Identity] = ingest.Owner{Contact: o.ContactID, Identified: o.Identified}
		}
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
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			for _, id := range ids {
				live[id] = true
			}
			return err
		}
		return nil
	})
	return live, err
}

// resolveBatch finds whom the identities msgs mention belong to now (from
// cache first, when an import has one), for ingest.Decide.
func (t *txn) resolveBatch(ctx context.Context, msgs []ingest.Message, cache *identityCache) (map[string]ingest.Owner, error) {
	var idents []string
	seen := map[string]bool{}
	for i := range msgs {
		for _, id := range msgs[i].IdentityKeys() {
			if id != "" && !seen[id] {
				seen[id] = true
				idents = append(idents, id)
			}
		}
	}
	known := make(map[string]ingest.Owner, len(idents))
	if cache != nil {
		idents = cache.fill(idents, known)
	}
	var users, anons []string
	for _, k := range idents {
		if ingest.IsAnonymousKey(k) {
			anons = append(anons, k)
		} else {
			users = append(users, k)
		}
	}
	sort.Strings(anons) // one lock order
	_, err := t.resolve(ctx, users, anons, nil, known)
	return known, err
}

// errLost means another transaction created one of the identities this
// one meant to create: start again, knowing it.
var errLost = errors.New("identity created concurrently")

// claim creates the plan's new identities, drawing ids for its new
// contacts: it returns the id drawn for each placeholder, or errLost when
// another transaction created one of the identities first.
func (t *txn) claim(ctx context.Context, p *ingest.Plan) (map[int64]int64, error) {
	drawn := map[int64]int64{} // placeholder → drawn id
	if len(p.NewIdents) == 0 {
		return drawn, nil
	}
	keys := make([]string, 0, len(p.NewIdents))
	for k := range p.NewIdents {
		keys = append(keys, k)
	}
	sort.Strings(keys) // one lock order for all writers
	vals := make([]int64, len(keys))
	var holders []int64
	held := make(map[int64]bool)
	for i, k := range keys {
		vals[i] = p.Follow(p.NewIdents[k])
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
		claimed, err := pgx.CollectRows(rows, pgx.RowToStructByName[claimedRow])
		for _, c := range claimed {
			got++
			if v := byKey[c.Identity]; v < 0 {
				drawn[v] = c.ContactID
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if got != len(keys) {
		return nil, errLost
	}
	return drawn, nil
}

// cached is a user identity with its contact, for the caches.
type cached struct {
	identity string
	contact  int64
}

// userCache maps user identities ("u:…") to their contacts for ingestion
// (Store.users). A user id's contact never changes once written: merges
// move only anonymous contacts' identities, and erasing a contact deletes
// it with its identities. So an entry can only go stale by the contact's
// erasure, in any process; storeKnown checks that the cached contacts
// still exist in the transaction that stores their events (one primary-key
// probe a contact instead of two lookups an identity) and drops the others.
type userCache struct {
	mu sync.RWMutex
	m  map[string]int64
}

// userCacheMax bounds the cache; when full it starts again empty (the
// users active now come back in at their next batch).
const userCacheMax = 2_000_000

func newUserCache() *userCache { return &userCache{m: map[string]int64{}} }

func (c *userCache) get(k string) (int64, bool) {
	if c == nil {
		return 0, false
	}
	c.mu.RLock()
	id, ok := c.m[k]
	c.mu.RUnlock()
	return id, ok
}

func (c *userCache) add(l []cached) {
	if c == nil || len(l) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m)+len(l) > userCacheMax {
		c.m = make(map[string]int64, len(l))
	}
	for _, e := range l {
		c.m[e.identity] = e.contact
	}
}

func (c *userCache) drop(keys []string) {
	if c == nil || len(keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.m, k)
	}
}

// len is the number of cached users.
func (c *userCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
