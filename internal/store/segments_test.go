package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
)

const segmentJourney = `segments:
  - name: vip
    when: sum("order_completed", "revenue", "365d") >= 500
  - name: browsers
    when: count("page_viewed", "30d") >= 1 && !ever("order_completed")
templates:
  - {name: hello, subject: "Hello", text: "Welcome."}
sequences:
  - name: vip-welcome
    trigger: {enter_stage: awareness}
    segment: vip
    steps:
      - {after: 0h, template: hello}
`

// Segments are evaluated with the rules, from the same facts: a sweep
// records every contact's memberships, the API's keyset pages list them,
// a sequence with segment: enrols only members, and an event that makes a
// contact a member is recorded at once.
func TestSegmentMembersAreRecordedAsContactsAreEvaluated(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	applyJourney(t, s, segmentJourney)
	ctx := context.Background()
	now := clock.Now().UTC().Truncate(time.Second)
	at := func(ago time.Duration, m ingest.Message) ingest.Message { m.Timestamp = now.Add(-ago); return m }
	var msgs []ingest.Message
	for i := 1; i <= 5; i++ { // five big spenders
		u := fmt.Sprintf("vip%d", i)
		msgs = append(msgs, at(24*time.Hour, track(u, "", u+"-1", "order_completed", `{"revenue": 300}`)),
			at(48*time.Hour, track(u, "", u+"-2", "order_completed", `{"revenue": "250.50"}`)))
	}
	msgs = append(msgs,
		at(400*24*time.Hour, track("old", "", "old-1", "order_completed", `{"revenue": 900}`)), // over a year ago
		at(time.Hour, track("look", "", "look-1", "page_viewed", "")),
		at(time.Hour, track("small", "", "small-1", "order_completed", `{"revenue": 20}`)))
	mustIngest(t, s, msgs...)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := lifecycle.NewEngine(s, log, lifecycle.WithHook(campaigns.NewRunner(s, log)))
	if _, err := e.Sweep(ctx, now); err != nil {
		t.Fatal(err)
	}
	members := func(seg string) []int64 {
		var ids []int64
		after := int64(0)
		for pages := 0; ; pages++ {
			page, next, err := s.SegmentMembers(ctx, seg, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 2 || pages > 10 {
				t.Fatalf("a page of %d members, or too many pages", len(page))
			}
			for _, m := range page {
				ids = append(ids, m.ID)
			}
			if next == 0 {
				return ids
			}
			after = next
		}
	}
	id := func(user string) int64 { return contactOf(t, tx, "u:"+user).ID }
	var vips []int64
	for i := 1; i <= 5; i++ {
		vips = append(vips, id(fmt.Sprintf("vip%d", i)))
	}
	slices.Sort(vips)
	if got := members("vip"); !slices.Equal(got, vips) {
		t.Fatalf("vip members %v, want %v", got, vips)
	}
	if got := members("browsers"); !slices.Equal(got, []int64{id("look")}) {
		t.Fatalf("browsers %v, want [%d]", got, id("look"))
	}
	// The sequence restricted to vip enrolled the five only.
	if n := count(t, tx, `SELECT count(*) FROM enrolments WHERE sequence = 'vip-welcome' AND contact_id = ANY($1)`, vips); n != 5 {
		t.Fatalf("%d vips enrolled, want 5", n)
	}
	if n := count(t, tx, `SELECT count(*) FROM enrolments`); n != 5 {
		t.Fatalf("%d enrolments, want the 5 vips'", n)
	}
	// A big order makes "small" a vip at once (event-driven), and no
	// longer a... it was never a browser; "look" stops being a browser
	// when it orders.
	res := mustIngest(t, s, at(time.Minute, track("small", "", "small-2", "order_completed", `{"revenue": 600}`)),
		at(time.Minute, track("look", "", "look-2", "order_completed", `{"revenue": 1}`)))
	names := map[int64][]string{}
	for _, c := range res.Contacts {
		names[c] = []string{"order_completed"}
	}
	if _, err := e.Evaluate(ctx, touchedBy(res.Contacts, nil, names), now); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(vips), id("small"))
	slices.Sort(want)
	if got := members("vip"); !slices.Equal(got, want) {
		t.Fatalf("vip members after the order %v, want %v", got, want)
	}
	if got := members("browsers"); len(got) != 0 {
		t.Fatalf("browsers after look's order: %v, want none", got)
	}
	// Sizes recorded once for the day, then not again within the interval.
	if err := s.RecordSegmentSizes(ctx, now, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	sums, err := s.SegmentSummaries(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 || sums[0].Name != "vip" || sums[0].Members != 6 || len(sums[0].Trend) != 1 || sums[1].Members != 0 {
		t.Fatalf("summaries %+v, want vip 6 (one day) and browsers 0", sums)
	}
	// Removing a segment removes its members.
	applyJourney(t, s, `segments:
  - {name: vip, when: 'sum("order_completed", "revenue", "365d") >= 500'}
`)
	if n := count(t, tx, `SELECT count(*) FROM segment_members WHERE segment = 'browsers'`); n != 0 {
		t.Fatalf("%d members of the removed segment left", n)
	}
	if _, _, err := s.SegmentMembers(ctx, "browsers", 0, 10); err == nil {
		t.Fatal("listing a removed segment: no error")
	}
}
