package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

const drawJourney = `templates:
  - {name: thanks, subject: "Thanks", text: "{{with .Offer}}{{.Code}}{{end}}"}
offers:
  - {name: pooled, when: 'false', template: thanks, valid: 14d, cooldown: 30d, codes: [CODE-B, CODE-A]}
  - {name: made, when: 'false', template: thanks, prefix: MADE-, cooldown: 30d}
`

// Draws recorded in bulk keep the one-by-one rules: a pool's codes go to
// the drawn contacts in the order given (the pool's own order), a drawn
// contact the pool cannot serve is recorded as not drawn and promised
// nothing, an offer without a pool generates codes, only the drawn get an
// email, and a contact drawn within the cooldown is not drawn again.
func TestDrawOffersInBulk(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	j := applyJourney(t, s, drawJourney)
	ctx := context.Background()
	if _, err := tx.Exec(ctx, `INSERT INTO contacts (id, email) SELECT i, 'c' || i || '@example.com' FROM generate_series(1, 6) i`); err != nil {
		t.Fatal(err)
	}
	pooled, made := j.Offers[0], j.Offers[1]
	if pooled.Name != "pooled" || made.Name != "made" {
		t.Fatalf("offers %v", j.Offers)
	}
	now := clock.Now().UTC().Truncate(time.Second)
	draw := func(id int64, o campaigns.Offer, drawn bool, at time.Time) campaigns.Draw {
		return campaigns.Draw{ContactID: id, Offer: o, Drawn: drawn, At: at}
	}
	n, err := s.DrawOffers(ctx, []campaigns.Draw{
		draw(3, pooled, true, now), draw(1, pooled, false, now), draw(2, pooled, true, now), draw(4, pooled, true, now),
		draw(5, made, true, now), draw(6, made, false, now),
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d drawn, want 3 (two pool codes, one generated)", n)
	}
	type row struct {
		drawn   bool
		code    string
		expires *time.Time
	}
	rows := map[[2]string]row{}
	r, err := tx.Query(ctx, `SELECT contact_id::text, offer, drawn, coalesce(code, ''), expires_at FROM offer_draws`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var id, offer string
		var x row
		if err := r.Scan(&id, &offer, &x.drawn, &x.code, &x.expires); err != nil {
			t.Fatal(err)
		}
		rows[[2]string{id, offer}] = x
	}
	want := map[[2]string]row{
		{"3", "pooled"}: {true, "CODE-A", nil}, {"2", "pooled"}: {true, "CODE-B", nil},
		{"4", "pooled"}: {false, "", nil}, {"1", "pooled"}: {false, "", nil},
		{"6", "made"}: {false, "", nil},
	}
	for k, w := range want {
		got, ok := rows[k]
		if !ok || got.drawn != w.drawn || got.code != w.code {
			t.Errorf("draw %v: %+v (present %v), want drawn %v code %q", k, got, ok, w.drawn, w.code)
		}
		if ok && got.drawn && (got.expires == nil || !got.expires.Equal(now.Add(14*24*time.Hour))) {
			t.Errorf("draw %v expires %v, want %v", k, got.expires, now.Add(14*24*time.Hour))
		}
	}
	if g := rows[[2]string{"5", "made"}]; !g.drawn || !strings.HasPrefix(g.code, "MADE-") || len(g.code) != len("MADE-")+10 || g.expires != nil {
		t.Errorf("the generated draw: %+v, want drawn with MADE- and ten characters, no expiry", g)
	}
	if len(rows) != 6 {
		t.Errorf("%d draws recorded, want 6", len(rows))
	}
	var given string
	if err := tx.QueryRow(ctx, `SELECT string_agg(code || '>' || contact_id, ' ' ORDER BY code) FROM coupons WHERE contact_id IS NOT NULL`).Scan(&given); err != nil || given != "CODE-A>3 CODE-B>2" {
		t.Errorf("coupons given: %q (%v), want CODE-A to 3 and CODE-B to 2", given, err)
	}
	var sends string
	if err := tx.QueryRow(ctx, `SELECT string_agg(contact_id || ':' || offer || ':' || template, ' ' ORDER BY contact_id) FROM sends`).Scan(&sends); err != nil || sends != "2:pooled:thanks 3:pooled:thanks 5:made:thanks" {
		t.Errorf("sends %q (%v), want the three drawn", sends, err)
	}
	// Ten days later, within the cooldown: nobody is drawn again, not
	// even those recorded as not drawn.
	n, err = s.DrawOffers(ctx, []campaigns.Draw{draw(1, pooled, true, now.Add(10*24*time.Hour)), draw(5, made, true, now.Add(10*24*time.Hour))})
	if err != nil || n != 0 {
		t.Fatalf("within the cooldown: %d drawn (%v), want 0", n, err)
	}
	// Past it, contact 1 is drawn, but the pool is empty.
	n, err = s.DrawOffers(ctx, []campaigns.Draw{draw(1, pooled, true, now.Add(31*24*time.Hour)), draw(6, made, true, now.Add(31*24*time.Hour))})
	if err != nil || n != 1 {
		t.Fatalf("past the cooldown: %d drawn (%v), want 1 (the generated code)", n, err)
	}
	if c := count(t, tx, `SELECT count(*) FROM offer_draws`); c != 8 {
		t.Errorf("%d draws recorded in all, want 8", c)
	}
}
