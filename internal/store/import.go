package store

import (
	"context"
	"sync"
	"time"

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
func (c *identityCache) fill(idents []string, known map[string]ingest.Owner) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rest := idents[:0]
	for _, k := range idents {
		if id, ok := c.get(k); ok {
			known[k] = ingest.Owner{Contact: id, Identified: true}
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
		if _, ok := c.get(ingest.UserKey(m.UserID)); !ok {
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
