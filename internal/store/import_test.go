package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

// An import's chunk stores its identify calls' traits as Ingest does: a
// contact's one call as sent, several merged (later wins, never wiping);
// the result has the counts (and refusals) only.
func TestImportTraitsOfAChunk(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	im := store.New(tx).NewImporter()
	ctx := context.Background()
	chunk := []ingest.Message{
		identify("u1", "", "i1", `{"email":"ann@example.com","name":"Ann","plan":"free"}`, "ann@example.com"),
		identify("u2", "", "i2", `{"plan":"pro","tags":["a","b"]}`, ""),
		track("u1", "", "t1", "order_completed", `{"revenue":30}`),
		identify("u1", "", "i3", `{"plan":"pro"}`, ""),
	}
	for round, want := range []ingest.Result{{Stored: 4}, {Duplicates: 4}} {
		res, err := im.Import(ctx, chunk)
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != want.Stored || res.Duplicates != want.Duplicates || res.Contacts != nil || res.Names != nil || res.Refused != nil {
			t.Fatalf("round %d: result %+v, want %d stored and %d already there, and no contacts", round, res, want.Stored, want.Duplicates)
		}
	}
	u1, u2 := contactOf(t, tx, "u:u1"), contactOf(t, tx, "u:u2")
	if u1.Traits["plan"] != "pro" || u1.Traits["name"] != "Ann" || u1.Email == nil || *u1.Email != "ann@example.com" {
		t.Fatalf("u1 %+v: want plan pro (the later call), name Ann and its email", u1)
	}
	if tags, ok := u2.Traits["tags"].([]any); u2.Traits["plan"] != "pro" || !ok || len(tags) != 2 || u2.Email != nil {
		t.Fatalf("u2 %+v: want its one call's traits as sent", u2)
	}
}

// An import's cache of user ids is bounded: it keeps the last two
// generations, and a chunk naming users it has forgotten looks them up
// again and puts their events on their contacts, creating none twice.
func TestImportForgetsOldUsersAndFindsThemAgain(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	const (
		gen   = 16
		users = 100
		per   = 10 // users a chunk
	)
	im := store.NewImporterCaching(store.New(tx), gen)
	ctx := context.Background()
	// Every user twice, the second time long after the cache forgot it.
	for pass := 0; pass < 2; pass++ {
		for from := 0; from < users; from += per {
			var chunk []ingest.Message
			for u := from; u < from+per; u++ {
				user := fmt.Sprint("user-", u)
				chunk = append(chunk, track(user, "", fmt.Sprintf("%s-%d", user, pass), "page_viewed", ""))
			}
			res, err := im.Import(ctx, chunk)
			if err != nil {
				t.Fatal(err)
			}
			if res.Stored != per {
				t.Fatalf("pass %d, users %d-%d: %d stored, want %d", pass, from, from+per-1, res.Stored, per)
			}
			if n := store.ImportCached(im); n > 2*gen {
				t.Fatalf("the cache holds %d user ids, over two generations of %d", n, gen)
			}
		}
	}
	if n := count(t, tx, "SELECT count(*) FROM contacts"); n != users {
		t.Fatalf("%d contacts, want %d", n, users)
	}
	if n := count(t, tx, "SELECT count(*) FROM (SELECT contact_id FROM events GROUP BY contact_id HAVING count(*) = 2) x"); n != users {
		t.Fatalf("%d contacts with both their events, want %d", n, users)
	}
}

// A chunk whose COPY meets events stored already (a file imported again,
// in part) stores the others once each, a statement for every
// FallbackRows of them, and counts the rest as already there; a new
// identify call among them has its traits merged.
func TestImportAgainStoresOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	im := store.New(tx).NewImporter()
	ctx := context.Background()
	n := 2*store.FallbackRows + 500 // three statements
	var chunk, half []ingest.Message
	for i := 0; i < n; i++ {
		m := track(fmt.Sprint("user-", i%3), "", fmt.Sprint("m", i), "page_viewed", "")
		chunk = append(chunk, m)
		if i%2 == 0 {
			half = append(half, m)
		}
	}
	chunk = append(chunk, identify("user-1", "", "late-identify", `{"plan":"pro"}`, ""))
	n++
	if res, err := im.Import(ctx, half); err != nil || res.Stored != len(half) {
		t.Fatalf("first import: %+v, %v; want %d stored", res, err, len(half))
	}
	res, err := im.Import(ctx, chunk)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != n-len(half) || res.Duplicates != len(half) {
		t.Fatalf("importing the whole chunk: %d stored, %d already there; want %d and %d", res.Stored, res.Duplicates, n-len(half), len(half))
	}
	if got := count(t, tx, "SELECT count(*) FROM events"); got != n {
		t.Fatalf("%d events stored, want %d", got, n)
	}
	if c := contactOf(t, tx, "u:user-1"); c.Traits["plan"] != "pro" {
		t.Fatalf("user-1's traits %v, want the new identify's plan", c.Traits)
	}
}

// A contact exists from its earliest message whatever order an import's
// chunks come in: a chunk with older events than the contact's creation
// moves it back (and its entry into its stage, not having moved), a chunk
// with newer ones leaves it; and the same holds for a contact live
// ingestion created and an import's history of it.
func TestImportMovesAContactsCreationBackToItsFirstMessage(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	ctx := context.Background()
	at := func(m ingest.Message, d time.Duration) ingest.Message { m.Timestamp = t0.Add(d); return m }
	created := func(user string) (time.Time, time.Time) {
		t.Helper()
		var c, e time.Time
		if err := tx.QueryRow(ctx, `SELECT created_at, stage_entered_at FROM contacts WHERE user_id = $1`, user).Scan(&c, &e); err != nil {
			t.Fatal(err)
		}
		return c, e
	}
	// u2 arrives live first, at t0.
	if _, err := s.Ingest(ctx, []ingest.Message{at(identify("u2", "", "live", `{}`, ""), 0)}); err != nil {
		t.Fatal(err)
	}
	im := s.NewImporter()
	for i, step := range []struct {
		chunk []ingest.Message
		want  map[string]time.Duration
	}{
		{[]ingest.Message{at(identify("u1", "", "a", `{}`, ""), 0), at(track("u1", "", "b", "page", ""), time.Hour)}, map[string]time.Duration{"u1": 0, "u2": 0}},
		{[]ingest.Message{at(track("u1", "", "c", "page", ""), -5*24*time.Hour), at(track("u2", "", "d", "page", ""), -time.Hour)}, map[string]time.Duration{"u1": -5 * 24 * time.Hour, "u2": -time.Hour}},
		{[]ingest.Message{at(track("u1", "", "e", "page", ""), -24*time.Hour), at(track("u2", "", "f", "page", ""), time.Hour)}, map[string]time.Duration{"u1": -5 * 24 * time.Hour, "u2": -time.Hour}},
	} {
		if _, err := im.Import(ctx, step.chunk); err != nil {
			t.Fatal(err)
		}
		for user, d := range step.want {
			if c, e := created(user); !c.Equal(t0.Add(d)) || !e.Equal(t0.Add(d)) {
				t.Errorf("chunk %d: %s created %s, in its stage since %s; want both %s", i+1, user, c, e, t0.Add(d))
			}
		}
	}
}
