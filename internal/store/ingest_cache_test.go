package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

// A process caches the contacts of the user ids it has resolved; an erase
// and a merge done by another process (its own pool and store) are seen by
// its next batch: an erased user's events start a new contact instead of
// going to the erased one, and an anonymous id merged into a cached user
// elsewhere is placed on that user.
func TestIngestUserCacheSeesOtherProcesses(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	open := func() *pgxpool.Pool {
		p, err := pgxpool.New(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	poolA, poolB := open(), open()
	a, b := store.New(poolA), store.New(poolB)
	ctx := context.Background()
	const users = 80 // a batch big enough for the COPY path
	round := func(tag string) []ingest.Message {
		var msgs []ingest.Message
		for u := 0; u < users; u++ {
			msgs = append(msgs, track(fmt.Sprint("u", u), "", fmt.Sprintf("%s-%d", tag, u), "clicked", ""))
		}
		return msgs
	}
	// Creates the users, then resolves them from the database (and
	// caches them), then stores by the cache.
	for _, tag := range []string{"r1", "r2", "r3"} {
		if res := mustIngest(t, a, round(tag)...); res.Stored != users {
			t.Fatalf("%s: stored %d, want %d", tag, res.Stored, users)
		}
	}
	if n := store.CachedUsers(a); n != users {
		t.Fatalf("process A caches %d users, want %d", n, users)
	}

	// Process B erases u3 and joins an anonymous visitor to u4.
	u3, u4 := contactOf(t, poolB, "u:u3").ID, contactOf(t, poolB, "u:u4").ID
	if _, err := b.Erase(ctx, u3); err != nil {
		t.Fatal(err)
	}
	mustIngest(t, b, track("", "visitor", "v1", "page_viewed", ""))
	mustIngest(t, b, identify("u4", "visitor", "join", `{}`, ""))

	// Process A goes on with its cache.
	msgs := round("r4")
	msgs = append(msgs, track("", "visitor", "v2", "page_viewed", ""))
	if res := mustIngest(t, a, msgs...); res.Stored != users+1 {
		t.Fatalf("r4: stored %d, want %d", res.Stored, users+1)
	}
	if n := count(t, poolA, `SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = e.contact_id)`); n != 0 {
		t.Fatalf("%d events stored for contacts that do not exist (the erased contact's cache entry was used)", n)
	}
	again := contactOf(t, poolA, "u:u3")
	if again.ID == u3 {
		t.Fatalf("u3 is on its erased contact %d again", u3)
	}
	if n := count(t, poolA, `SELECT count(*) FROM events WHERE contact_id = $1`, again.ID); n != 1 {
		t.Fatalf("u3's new contact has %d events, want 1 (only r4's)", n)
	}
	if n := count(t, poolA, `SELECT count(*) FROM events WHERE contact_id = $1 AND message_id IN ('v1', 'v2')`, u4); n != 2 {
		t.Fatalf("the merged visitor's events on u4: %d, want 2", n)
	}
	if n := count(t, poolA, `SELECT count(*) FROM events WHERE contact_id = $1`, u4); n != 4+1+2 {
		t.Fatalf("u4 has %d events, want 7 (four rounds, the identify, two visits)", n)
	}
	if n := store.CachedUsers(a); n != users {
		t.Fatalf("process A caches %d users after the erase, want %d (u3 forgotten, then its new contact learned)", n, users)
	}
	// The next round stores u3's event on its new contact by the cache.
	mustIngest(t, a, round("r5")...)
	if n := count(t, poolA, `SELECT count(*) FROM events WHERE contact_id = $1`, again.ID); n != 2 {
		t.Fatalf("u3's new contact has %d events, want 2", n)
	}
}
