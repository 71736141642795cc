package campaigns

import (
	"strings"
	"testing"
	"time"
)

// The split is reproducible (the same contact, the same place, every
// time), even across up to four variants, and the test share is the share.
func TestSplitIsEvenAndReproducible(t *testing.T) {
	t.Parallel()
	for variants := 2; variants <= MaxVariants; variants++ {
		counts := make([]int, variants)
		rest := 0
		const n = 40000
		for id := int64(1); id <= n; id++ {
			v := Split("winter", id, 0.2, variants)
			if v != Split("winter", id, 0.2, variants) {
				t.Fatalf("contact %d: two splits disagree", id)
			}
			if v < 0 {
				rest++
				continue
			}
			counts[v]++
		}
		if share := float64(n-rest) / n; share < 0.19 || share > 0.21 {
			t.Errorf("%d variants: test share %.3f, want 0.2", variants, share)
		}
		for i, c := range counts {
			if want := float64(n-rest) / float64(variants); float64(c) < want*0.93 || float64(c) > want*1.07 {
				t.Errorf("%d variants: variant %d got %d of %d, want about %.0f", variants, i+1, c, n-rest, want)
			}
		}
	}
	// Another broadcast splits its audience otherwise.
	same := 0
	for id := int64(1); id <= 1000; id++ {
		if Split("winter", id, 0.5, 2) == Split("spring", id, 0.5, 2) {
			same++
		}
	}
	if same > 450 {
		t.Errorf("two broadcasts placed %d of 1000 contacts alike, want about 375", same)
	}
	if Split("winter", 1, 1, 2) != 0 || Split("winter", 1, 0.2, 1) != 0 {
		t.Error("without a test everyone gets variant 1")
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	test := &ABTest{PickBy: PickClicks, MinResults: 10, Variants: []Variant{{Subject: "a"}, {Subject: "b"}, {Subject: "c"}}}
	res := func(sent, people []int) []VariantResult {
		out := make([]VariantResult, len(sent))
		for i := range sent {
			out[i] = VariantResult{Variant: i, Label: test.Label(i), Sent: sent[i], People: people[i]}
		}
		return out
	}
	tests := []struct {
		name    string
		results []VariantResult
		winner  int
		kept    bool
		reason  string
	}{
		{"the best rate wins, not the most clicks", res([]int{100, 50, 100}, []int{10, 8, 9}), 1, false, `variant 2 (subject "b") won: 16.0% of its recipients clicked, against at most 10.0% for the others`},
		{"a tie keeps the first", res([]int{100, 50, 100}, []int{10, 8, 16}), 0, true, "a tie: the highest share who clicked (16.0%) is shared by more than one variant: variant 1 kept"},
		{"too few results", res([]int{100, 100, 100}, []int{1, 5, 3}), 0, true, "too few results: 9 people clicked across the variants, fewer than 10: variant 1 kept"},
		{"one person", res([]int{3, 3, 3}, []int{0, 1, 0}), 0, true, "too few results: 1 person clicked"},
		{"a variant nobody got", res([]int{0, 40, 40}, []int{0, 6, 5}), 1, false, "variant 2"},
		{"the first wins on its own", res([]int{10, 10, 10}, []int{9, 1, 0}), 0, false, `variant 1 (subject "a") won: 90.0%`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(test, tt.results, at)
			if d.Winner != tt.winner || d.Kept != tt.kept || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("winner %d kept %v reason %q; want %d, %v, %q", d.Winner+1, d.Kept, d.Reason, tt.winner+1, tt.kept, tt.reason)
			}
			if !strings.Contains(d.Rule, "clicked") || !strings.Contains(d.Rule, "fewer than 10") || d.PickBy != PickClicks {
				t.Errorf("rule %q", d.Rule)
			}
		})
	}
	// By conversions: 9 of 10 against 2 of 10 and none; 11 people in all,
	// over the 10 needed.
	d := Decide(&ABTest{PickBy: PickConversions, Variants: test.Variants}, res([]int{10, 10, 10}, []int{0, 9, 2}), at)
	if d.Winner != 1 || d.Kept || d.Reason != `variant 2 (subject "b") won: 90.0% of its recipients converted, against at most 20.0% for the others` ||
		!strings.Contains(d.Rule, "converted (a conversion credited to its email") {
		t.Errorf("by conversions: %+v", d)
	}
	d = Decide(&ABTest{PickBy: PickConversions, Variants: test.Variants}, res([]int{10, 10, 10}, []int{0, 9, 0}), at)
	if d.Winner != 0 || !d.Kept || d.Reason != "too few results: 9 people converted across the variants, fewer than 10: variant 1 kept" {
		t.Errorf("by conversions, too few: %+v", d)
	}
}

// A wall time is sent at that hour in each contact's zone, from UTC+14
// round the world (rolling); one a daylight-saving change skips goes out as
// the clock reads it after the change.
func TestWallTimesRollAcrossZones(t *testing.T) {
	t.Parallel()
	wall := time.Date(2026, 3, 8, 2, 30, 0, 0, time.UTC) // 02:30 does not exist in New York that day
	zone := func(name string) *time.Location {
		l, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, c := range []struct {
		zone string
		want string
	}{
		{"Pacific/Kiritimati", "2026-03-07T12:30:00Z"},
		{"Asia/Tokyo", "2026-03-07T17:30:00Z"},
		{"UTC", "2026-03-08T02:30:00Z"},
		{"America/New_York", "2026-03-08T07:30:00Z"}, // 03:30 EDT
		{"Pacific/Pago_Pago", "2026-03-08T13:30:00Z"},
	} {
		if got := DueIn(wall, true, zone(c.zone)).Format(time.RFC3339); got != c.want {
			t.Errorf("%s: %s, want %s", c.zone, got, c.want)
		}
	}
	if got := DueIn(wall, false, zone("Asia/Tokyo")); !got.Equal(wall) {
		t.Errorf("an instant is the same everywhere: %s", got)
	}
	if got := RunStart(wall, true); !got.Equal(DueIn(wall, true, zone("Pacific/Kiritimati"))) {
		t.Errorf("a wall-time run starts at %s, want when Kiritimati gets it", got)
	}
}

// A one-off runs once its start has come, once; a schedule's latest firing
// that came runs (one, however many were missed), never one from before
// the broadcast was scheduled, and in each contact's zone unless CRON_TZ
// says where.
func TestNextRun(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	b := Broadcast{Name: "news", SendAt: "2026-05-10T09:00"}
	if _, _, _, err := b.NextRun(time.Date(2026, 5, 9, 18, 59, 0, 0, time.UTC), since, time.Time{}); err != ErrNoRun {
		t.Errorf("before UTC+14's 09:00: %v, want no run", err)
	}
	at, local, _, err := b.NextRun(time.Date(2026, 5, 9, 19, 0, 0, 0, time.UTC), since, time.Time{})
	if err != nil || !local || !at.Equal(time.Date(2026, 5, 10, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("at UTC+14's 09:00: %s %v %v", at, local, err)
	}
	if _, _, _, err := b.NextRun(time.Date(2026, 5, 12, 0, 0, 0, 0, time.UTC), since, at); err != ErrNoRun {
		t.Errorf("after its run: %v, want no other", err)
	}
	inst := Broadcast{Name: "launch", SendAt: "2026-05-10T09:00:00+02:00"}
	if at, local, _, err := inst.NextRun(time.Date(2026, 5, 10, 7, 0, 0, 0, time.UTC), since, time.Time{}); err != nil || local || !at.Equal(time.Date(2026, 5, 10, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("an instant: %s %v %v", at, local, err)
	}
	daily := Broadcast{Name: "daily", Schedule: "0 9 * * *"}
	// Scheduled on May 1st at 12:00 UTC: May 2nd 09:00 wall is the first
	// firing after (starting May 1st 19:00 UTC).
	if _, _, _, err := daily.NextRun(time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC), since, time.Time{}); err != ErrNoRun {
		t.Errorf("daily before its first start: %v", err)
	}
	at, local, skipped, err := daily.NextRun(time.Date(2026, 5, 4, 20, 0, 0, 0, time.UTC), since, time.Time{})
	if err != nil || !local || skipped != 3 || !at.Equal(time.Date(2026, 5, 5, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("daily, four firings came (May 2nd to 5th): %s local %v skipped %d %v; want May 5th 09:00 wall, 3 skipped", at, local, skipped, err)
	}
	if _, _, _, err := daily.NextRun(time.Date(2026, 5, 5, 18, 0, 0, 0, time.UTC), since, at); err != ErrNoRun {
		t.Errorf("daily, after that run: %v", err)
	}
	zoned := Broadcast{Name: "berlin", Schedule: "CRON_TZ=Europe/Berlin 0 9 * * *"}
	at, local, _, err = zoned.NextRun(time.Date(2026, 5, 2, 8, 0, 0, 0, time.UTC), since, time.Time{})
	if err != nil || local || !at.Equal(time.Date(2026, 5, 2, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("Berlin's 09:00: %s local %v %v", at, local, err)
	}
}
