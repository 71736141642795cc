package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

var t0 = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

func track(user, anon, msgID, event string, props string) ingest.Message {
	if props == "" {
		props = "{}"
	}
	return ingest.Message{Kind: ingest.KindTrack, UserID: user, AnonymousID: anon, MessageID: msgID, Name: event, Properties: json.RawMessage(props), Timestamp: t0}
}

func identify(user, anon, msgID, traits, email string) ingest.Message {
	return ingest.Message{Kind: ingest.KindIdentify, UserID: user, AnonymousID: anon, MessageID: msgID, Name: "identify", Properties: json.RawMessage(traits), Traits: json.RawMessage(traits), Email: email, Timestamp: t0}
}

type contactRow struct {
	ID          int64
	UserID      *string
	AnonymousID *string
	Email       *string
	Traits      map[string]any
	MergedInto  *int64
}

func contactOf(t *testing.T, db store.DB, identity string) contactRow {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT c.id, c.user_id, c.anonymous_id, c.email, c.traits, c.merged_into
		FROM identities i JOIN contacts c ON c.id = i.contact_id WHERE i.identity = $1`, identity)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[contactRow])
	if err != nil {
		t.Fatalf("contact of %s: %v", identity, err)
	}
	return c
}

func count(t *testing.T, db store.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIngestStoresOnceAndMergesTraits(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	ctx := context.Background()

	batch := []ingest.Message{
		identify("u1", "", "m1", `{"email":"ann@example.com","name":"Ann","plan":"free"}`, "ann@example.com"),
		track("u1", "", "m2", "order_completed", `{"revenue":30}`),
		identify("u1", "", "m3", `{"plan":"pro"}`, ""),
	}
	res, err := s.Ingest(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 3 || res.Duplicates != 0 || len(res.Contacts) != 1 {
		t.Fatalf("result %+v, want 3 stored for 1 contact", res)
	}
	// A client retrying the same batch ten times stores nothing more.
	for i := 0; i < 10; i++ {
		res, err = s.Ingest(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != 0 || res.Duplicates != 3 || len(res.Contacts) != 0 {
			t.Fatalf("retry %d: result %+v, want all duplicates", i, res)
		}
	}
	if n := count(t, tx, "SELECT count(*) FROM events"); n != 3 {
		t.Fatalf("%d events stored, want 3", n)
	}
	c := contactOf(t, tx, "u:u1")
	// Traits merge, later wins, never wipe.
	if c.Traits["plan"] != "pro" || c.Traits["name"] != "Ann" || c.Email == nil || *c.Email != "ann@example.com" {
		t.Fatalf("contact %+v", c)
	}
}

func TestIngestJoinsAnonymousHistoryToUser(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	ctx := context.Background()

	// An existing customer, and an anonymous visitor browsing.
	mustIngest(t, s, identify("u1", "", "m1", `{"name":"Ann","plan":"pro"}`, ""))
	mustIngest(t, s,
		track("", "anon-1", "m2", "page_viewed", ""),
		track("", "anon-1", "m3", "product_viewed", ""),
		identify("", "anon-1", "m4", `{"plan":"free","utm":"ad"}`, ""))
	anon := contactOf(t, tx, "a:anon-1")
	user := contactOf(t, tx, "u:u1")
	if anon.ID == user.ID {
		t.Fatal("anonymous visitor and user share a contact before identify")
	}

	// The visitor logs in: identify joins the anonymousId to the userId.
	mustIngest(t, s, identify("u1", "anon-1", "m5", `{}`, ""))
	joined := contactOf(t, tx, "a:anon-1")
	if joined.ID != user.ID {
		t.Fatalf("anon-1 belongs to contact %d, want %d", joined.ID, user.ID)
	}
	if n := count(t, tx, "SELECT count(*) FROM events WHERE contact_id = $1", user.ID); n != 5 {
		t.Fatalf("user has %d events, want 5 (own 1 + anonymous 3 + identify 1)", n)
	}
	if n := count(t, tx, "SELECT count(*) FROM events WHERE contact_id = $1", anon.ID); n != 0 {
		t.Fatalf("merged contact still has %d events", n)
	}
	// The identified contact's traits win over the anonymous ones; the
	// anonymous ones it lacked are kept.
	if joined.Traits["plan"] != "pro" || joined.Traits["utm"] != "ad" {
		t.Fatalf("traits %v", joined.Traits)
	}
	var mergedInto *int64
	if err := tx.QueryRow(ctx, "SELECT merged_into FROM contacts WHERE id = $1", anon.ID).Scan(&mergedInto); err != nil {
		t.Fatal(err)
	}
	if mergedInto == nil || *mergedInto != user.ID {
		t.Fatalf("merged_into = %v, want %d", mergedInto, user.ID)
	}
}

func TestIngestAnonymousBecomesIdentified(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	mustIngest(t, s, track("", "anon-2", "m1", "page_viewed", ""))
	before := contactOf(t, tx, "a:anon-2")
	mustIngest(t, s, identify("u2", "anon-2", "m2", `{"email":"bo@example.com"}`, "bo@example.com"))
	after := contactOf(t, tx, "u:u2")
	if after.ID != before.ID {
		t.Fatalf("identified contact %d, want the anonymous one %d", after.ID, before.ID)
	}
	if after.UserID == nil || *after.UserID != "u2" || after.Email == nil || *after.Email != "bo@example.com" {
		t.Fatalf("contact %+v", after)
	}
}

func TestIngestSameBatchNewIdentities(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	// All new: an anonymous visit, then identify in the same batch, then a
	// second user sharing no ids.
	mustIngest(t, s,
		track("", "anon-3", "m1", "page_viewed", ""),
		identify("u3", "anon-3", "m2", `{}`, ""),
		track("u3", "", "m3", "cart_updated", ""),
		track("u4", "", "m4", "page_viewed", ""),
	)
	a, u := contactOf(t, tx, "a:anon-3"), contactOf(t, tx, "u:u3")
	if a.ID != u.ID {
		t.Fatalf("anon-3 → %d, u3 → %d; want one contact", a.ID, u.ID)
	}
	if n := count(t, tx, "SELECT count(*) FROM contacts WHERE merged_into IS NULL"); n != 2 {
		t.Fatalf("%d contacts, want 2", n)
	}
	if n := count(t, tx, "SELECT count(*) FROM events WHERE contact_id = $1", u.ID); n != 3 {
		t.Fatalf("%d events on u3, want 3", n)
	}
}

func mustIngest(t *testing.T, s *store.Store, msgs ...ingest.Message) ingest.Result {
	t.Helper()
	res, err := s.Ingest(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Concurrent writers creating the same new contacts never lose an event or
// create a contact twice.
func TestIngestConcurrentWriters(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var msgs []ingest.Message
			for u := 0; u < 50; u++ {
				msgs = append(msgs, track(fmt.Sprintf("user-%d", u), "", fmt.Sprintf("w%d-u%d", w, u), "page_viewed", ""))
			}
			if _, err := s.Ingest(ctx, msgs); err != nil {
				errs <- err
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := count(t, pool, "SELECT count(*) FROM contacts"); n != 50 {
		t.Fatalf("%d contacts, want 50", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM events"); n != 400 {
		t.Fatalf("%d events, want 400", n)
	}
}

// Batches of known contacts big enough for COPY: events stored once each
// (a repeat inside the batch, and a retry of the whole batch, which makes
// COPY fail and the single statement store only what is missing); the
// result names every contact with its newest event; anonymous ids and a
// user id on another user's device are placed as in small batches.
func TestIngestKnownContactsByCopy(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"pool", "tx"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var s *store.Store
			var db store.DB
			if mode == "pool" {
				p := pgtest.Pool(t)
				s, db = store.New(p), p
			} else {
				tx := pgtest.Tx(t)
				s, db = store.New(tx), tx
			}
			ctx := context.Background()
			const users = 40
			var first []ingest.Message
			for u := 0; u < users; u++ {
				first = append(first, track(fmt.Sprint("u", u), fmt.Sprint("a", u), fmt.Sprint("first-", u), "signed_up", ""))
			}
			first = append(first, track("", "lonely", "first-anon", "page_viewed", ""))
			mustIngest(t, s, first...)

			var batch []ingest.Message
			for i := 0; i < 200; i++ {
				m := track(fmt.Sprint("u", i%users), "", fmt.Sprint("m", i), "clicked", fmt.Sprintf(`{"i":%d}`, i))
				m.Timestamp = t0.Add(time.Duration(i) * time.Second)
				batch = append(batch, m)
			}
			batch = append(batch,
				batch[7],                                    // repeated in the batch
				track("", "a3", "anon-only", "x", ""),       // anonymous id of u3
				track("u5", "a6", "shared-device", "y", ""), // u5 on u6's device stays u5
				track("", "lonely", "anon-2", "z", ""),
			)
			res, err := s.Ingest(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			if res.Stored != 203 || res.Duplicates != 1 {
				t.Fatalf("stored %d, duplicates %d; want 203 and 1", res.Stored, res.Duplicates)
			}
			if len(res.Contacts) != users+1 {
				t.Fatalf("%d contacts touched, want %d", len(res.Contacts), users+1)
			}
			u0 := contactOf(t, db, "u:u0").ID
			if l := res.Latest[u0]; l == nil || l.MessageID != "m160" {
				t.Fatalf("latest of u0: %+v, want m160", l)
			}
			if n := len(res.Names[u0]); n != 5 {
				t.Fatalf("u0 names %v, want 5", res.Names[u0])
			}
			u3, u5 := contactOf(t, db, "u:u3").ID, contactOf(t, db, "u:u5").ID
			if n := count(t, db, `SELECT count(*) FROM events WHERE contact_id = $1 AND message_id = 'anon-only'`, u3); n != 1 {
				t.Fatalf("the anonymous id's event is not on its user's contact (%d)", n)
			}
			if n := count(t, db, `SELECT count(*) FROM events WHERE contact_id = $1 AND message_id = 'shared-device'`, u5); n != 1 {
				t.Fatalf("the shared device's event is not on u5 (%d)", n)
			}
			// The client retries the whole batch, with one new event.
			retry := append(append([]ingest.Message(nil), batch...), track("u1", "", "late", "clicked", ""))
			res, err = s.Ingest(ctx, retry)
			if err != nil {
				t.Fatal(err)
			}
			if res.Stored != 1 || res.Duplicates != len(batch) {
				t.Fatalf("retry: stored %d, duplicates %d; want 1 and %d", res.Stored, res.Duplicates, len(batch))
			}
			if n := count(t, db, `SELECT count(*) FROM events`); n != users+1+203+1 {
				t.Fatalf("%d events stored, want %d", n, users+1+203+1)
			}
		})
	}
}
