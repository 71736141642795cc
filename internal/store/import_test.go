package store_test

import (
	"context"
	"fmt"
	"testing"

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
