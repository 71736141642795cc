package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

// Many writers at once (HTTP flushers, import workers, other instances)
// create the same new users and anonymous visitors and join them: every
// event is stored once, each user has one contact holding all its events,
// and no contact is left without an identity.
func TestIngestConcurrentNewIdentitiesAndJoins(t *testing.T) {
	t.Parallel()
	const (
		writers = 16
		users   = 600
		batch   = 50 // users a batch
	)
	// A connection per writer, so that all of them race.
	cfg, err := pgxpool.ParseConfig(pgtest.Clone(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = writers
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := store.New(pool)
	im := s.NewImporter()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Each writer meets the users in its own order, a batch at a
			// time, so new ids are being created by several at once all
			// along.
			for from := 0; from < users; from += batch {
				var msgs []ingest.Message
				for k := from; k < from+batch; k++ {
					u := (k*7 + w*batch*3) % users
					user, anon := fmt.Sprintf("user-%d", u), fmt.Sprintf("anon-%d", u)
					id := fmt.Sprintf("w%d-u%d", w, u)
					switch w % 3 {
					case 0: // browsing anonymously, then logging in
						msgs = append(msgs, track("", anon, id+"-a", "page_viewed", ""), identify(user, anon, id+"-i", `{"plan":"pro"}`, ""))
					case 1: // logged in, on the same device
						msgs = append(msgs, track(user, anon, id+"-b", "cart_updated", ""))
					default: // a server-side event with the user id only
						msgs = append(msgs, track(user, "", id+"-c", "order_completed", ""))
					}
				}
				// Half the writers go through the import path.
				var err error
				if w%2 == 0 {
					_, err = s.Ingest(ctx, msgs)
				} else {
					_, err = im.Import(ctx, msgs)
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// writers 0, 3, 6, 9, 12 and 15 send 2 events a user, the others 1.
	const perUser = 6*2 + 10
	want := users * perUser
	if n := count(t, pool, "SELECT count(*) FROM events"); n != want {
		t.Fatalf("%d events stored, want %d", n, want)
	}
	if n := count(t, pool, "SELECT count(DISTINCT message_id) FROM events"); n != want {
		t.Fatalf("%d distinct events, want %d", n, want)
	}
	for u := 0; u < users; u++ {
		c := contactOf(t, pool, fmt.Sprintf("u:user-%d", u))
		if c.MergedInto != nil {
			t.Fatalf("user-%d maps to merged contact %d", u, c.ID)
		}
		if a := contactOf(t, pool, fmt.Sprintf("a:anon-%d", u)); a.ID != c.ID {
			t.Fatalf("anon-%d → contact %d, user-%d → %d: want one contact", u, a.ID, u, c.ID)
		}
		if n := count(t, pool, "SELECT count(*) FROM events WHERE contact_id = $1", c.ID); n != perUser {
			t.Fatalf("user-%d's contact has %d events, want %d", u, n, perUser)
		}
	}
	if n := count(t, pool, "SELECT count(*) FROM contacts WHERE user_id IS NOT NULL AND merged_into IS NULL"); n != users {
		t.Fatalf("%d identified contacts, want %d", n, users)
	}
	if n := count(t, pool, "SELECT count(*) FROM contacts c WHERE merged_into IS NULL AND NOT EXISTS (SELECT 1 FROM identities i WHERE i.contact_id = c.id)"); n != 0 {
		t.Fatalf("%d live contacts without an identity", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM events e JOIN contacts c ON c.id = e.contact_id WHERE c.merged_into IS NOT NULL"); n != 0 {
		t.Fatalf("%d events left on merged contacts", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = e.contact_id)"); n != 0 {
		t.Fatalf("%d events of no contact", n)
	}
}
