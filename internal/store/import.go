package store

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/waymark/waymark/internal/ingest"
)

// Import stores a large chunk of messages from a bulk file in one
// transaction, with the same identity and de-duplication rules as Ingest;
// the result has the counts and the refused messages (see
// Importer.Import).
func (s *Store) Import(ctx context.Context, msgs []ingest.Message) (ingest.Result, error) {
	return s.NewImporter().Import(ctx, msgs)
}

// Importer stores the chunks of one bulk import. It loads events with COPY
// and remembers the contacts of the user ids it has seen lately (a user
// id's contact never changes once written), so a chunk of known users
// costs no lookup. Its memory does not grow with the file: it keeps the
// user ids of the last chunks (see identityCache) and hands back counts
// only (Stored, Duplicates, Refused). It is safe for concurrent use.
type Importer struct {
	s     *Store
	cache *identityCache
}

// NewImporter starts an import.
func (s *Store) NewImporter() *Importer { return s.newImporter(importCacheGeneration) }

// newImporter starts an import whose cache holds generations of gen user
// ids.
func (s *Store) newImporter(gen int) *Importer {
	return &Importer{s: s, cache: newIdentityCache(gen)}
}

// importCacheGeneration is how many user ids a generation of an import's
// cache holds. In a file grouped by user, a chunk's users are the previous
// chunk's last and new ones: a few chunks' worth is all a cache can use.
// In a file in time order, a chunk meets users from all over, and a user
// the cache forgot costs a lookup: 3,000,000 events of 540,000 new users
// in time order took 28.9 s (26.9 s with every user kept, 31.3 s with
// generations of 131,072). A user id costs about 50 bytes: 2 full
// generations, ~20 MB.
const importCacheGeneration = 200000

// Import stores one chunk in one transaction. The result has the counts
// and the refused messages, not the contacts touched (Contacts, Latest and
// Names are nil): an import fires no event triggers.
//
// A chunk naming user ids the import has not seen yet, or anonymous ids,
// first gets its contacts and identities in a short transaction of their
// own: two workers whose chunks share new users (every chunk, at the start
// of a file of new users) then wait for each other's short transaction
// only, not for the COPY of a whole chunk (and start it again). The
// events follow with the chunk's identities all known.
func (im *Importer) Import(ctx context.Context, msgs []ingest.Message) (ingest.Result, error) {
	if im.cache.unknown(msgs) {
		err := im.s.ingestTx(ctx, "importing contacts", msgs, ingestOptions{contactsOnly: true, cache: im.cache}, func(ingest.Result, map[int64]int64) {})
		if err != nil {
			return ingest.Result{}, err
		}
	}
	var res ingest.Result
	err := im.s.ingestTx(ctx, "importing events", msgs, ingestOptions{copy: true, tally: true, cache: im.cache}, func(r ingest.Result, _ map[int64]int64) { res = r })
	return res, err
}

type cached struct {
	identity string
	contact  int64
}

// identityCache maps user identities ("u:…") to their contacts, for one
// import. It holds two generations: when the current one is full it
// becomes the old one and the one before is dropped, so it never holds
// more than about twice its generation; an identity a chunk uses is added
// again (into the current generation) once the chunk is stored.
type identityCache struct {
	mu       sync.RWMutex
	cur, old map[string]int64
	max      int // identities a generation
	// since: contacts known to exist from at least this instant (created
	// by the import, or moved back by sqlEarlierContacts), in generations
	// like the identities: a chunk's events no older than it need no
	// look at the contact.
	scur, sold map[int64]time.Time
}

func newIdentityCache(max int) *identityCache {
	return &identityCache{cur: map[string]int64{}, scur: map[int64]time.Time{}, max: max}
}

// older keeps the contacts (ids[i] with the earliest of its messages
// firsts[i]) that may exist later than their messages: those not known to
// exist from firsts[i] already.
func (c *identityCache) older(ids []int64, firsts []time.Time) ([]int64, []time.Time) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	keep := 0
	for i, id := range ids {
		since, ok := c.scur[id]
		if !ok {
			since, ok = c.sold[id]
		}
		if ok && !firsts[i].Before(since) {
			continue
		}
		ids[keep], firsts[keep] = id, firsts[i]
		keep++
	}
	return ids[:keep], firsts[:keep]
}

// existsFrom records that the contacts exist from (at least) firsts.
func (c *identityCache) existsFrom(ids []int64, firsts []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, id := range ids {
		if len(c.scur) >= c.max {
			c.sold, c.scur = c.scur, make(map[int64]time.Time, c.max)
		}
		if since, ok := c.scur[id]; !ok || firsts[i].Before(since) {
			c.scur[id] = firsts[i]
		}
	}
}

// get looks k up (the caller holds mu).
func (c *identityCache) get(k string) (int64, bool) {
	if id, ok := c.cur[k]; ok {
		return id, true
	}
	id, ok := c.old[k]
	return id, ok
}

// fill puts the cached identities of idents into known and returns the
// others.
func (c *identityCache) fill(idents []string, known map[string]identityInfo) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rest := idents[:0]
	for _, k := range idents {
		if id, ok := c.get(k); ok {
			known[k] = identityInfo{id, true}
		} else {
			rest = append(rest, k)
		}
	}
	return rest
}

// unknown says whether a message of msgs has an anonymous id (they are not
// cached) or a user id not in the cache.
func (c *identityCache) unknown(msgs []ingest.Message) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	last := ""
	for i := range msgs {
		m := &msgs[i]
		if m.AnonymousID != "" {
			return true
		}
		if m.UserID == "" || m.UserID == last {
			continue
		}
		last = m.UserID
		if _, ok := c.get("u:" + m.UserID); !ok {
			return true
		}
	}
	return false
}

func (c *identityCache) add(l []cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range l {
		if len(c.cur) >= c.max {
			c.old, c.cur = c.cur, make(map[string]int64, c.max)
		}
		c.cur[e.identity] = e.contact
	}
}

// len is the number of identities cached.
func (c *identityCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.old)
}

var eventColumns = []string{"contact_id", "message_id", "kind", "name", "properties", "context", "occurred_at"}

// copyEvents loads the events with COPY, in (contact, message) order, under
// a savepoint the caller set; if one is already stored (a re-import), it
// rolls back to the savepoint and inserts them once each instead, in the
// same order, fallbackRows at a time: fallback queues sqlInsertEvents for
// the messages at the positions it is given. It returns the events stored
// and the positions (1-based) of the new ones.
func (t *txn) copyEvents(ctx context.Context, msgs []ingest.Message, contactOf []int64, fallback func(b *pgx.Batch, at []int)) (int64, []int64, error) {
	order := make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if contactOf[a] != contactOf[b] {
			if contactOf[a] < contactOf[b] {
				return -1
			}
			return 1
		}
		if msgs[a].MessageID < msgs[b].MessageID {
			return -1
		}
		if msgs[a].MessageID > msgs[b].MessageID {
			return 1
		}
		return 0
	})
	// The same message twice in the chunk would stop COPY: go the slow way.
	dup := false
	for j := 1; j < len(order); j++ {
		a, b := order[j-1], order[j]
		if contactOf[a] == contactOf[b] && msgs[a].MessageID == msgs[b].MessageID {
			dup = true
			break
		}
	}
	if !dup {
		row := make([]any, len(eventColumns))
		j := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if j == len(order) {
				return nil, nil
			}
			m := &msgs[order[j]]
			row[0], row[1], row[2], row[3], row[4], row[6] = contactOf[order[j]], m.MessageID, m.Kind, m.Name, m.Properties, m.Timestamp
			if len(m.Context) > 0 {
				row[5] = m.Context
			} else {
				row[5] = nil
			}
			j++
			return row, nil
		})
		err := t.copyFrom(ctx, src)
		if err == nil {
			fresh := make([]int64, len(msgs))
			for i := range fresh {
				fresh[i] = int64(i + 1)
			}
			return int64(len(msgs)), fresh, nil
		}
		var pg *pgconn.PgError
		if !errors.As(err, &pg) || pg.Code != "23505" {
			return 0, nil, err
		}
	}
	var (
		stored int64
		fresh  []int64
	)
	if !dup {
		// On its own: pgx cannot prepare the fallback in an aborted
		// transaction.
		err := t.run(ctx, false, func(b *pgx.Batch) { b.Queue("rollback to savepoint copy_events") },
			func(br pgx.BatchResults) error { _, err := br.Exec(); return err })
		if err != nil {
			return 0, nil, err
		}
	}
	for k := 0; k < len(order); k += fallbackRows {
		at := order[k:min(k+fallbackRows, len(order))]
		err := t.run(ctx, false, func(b *pgx.Batch) { fallback(b, at) }, func(br pgx.BatchResults) error {
			var (
				n int64
				f []int64
			)
			if err := br.QueryRow().Scan(&n, &f); err != nil {
				return err
			}
			stored += n
			for _, o := range f {
				fresh = append(fresh, int64(at[o-1]+1))
			}
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
	}
	return stored, fresh, nil
}

// fallbackRows is how many events a statement of copyEvents' fallback
// inserts: a chunk's events in one statement would take as much memory
// again as the chunk (its arrays, and pgx's encoding of them).
const fallbackRows = 10000

// copyFrom COPYs src into events (after BEGIN, if not begun yet).
func (t *txn) copyFrom(ctx context.Context, src pgx.CopyFromSource) error {
	if t.conn != nil {
		if !t.begun {
			if _, err := t.conn.Exec(ctx, "begin"); err != nil {
				return err
			}
			t.begun = true
		}
		_, err := t.conn.CopyFrom(ctx, pgx.Identifier{"events"}, eventColumns, src)
		return err
	}
	_, err := t.tx.CopyFrom(ctx, pgx.Identifier{"events"}, eventColumns, src)
	return err
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
