package campaigns

import (
	"testing"
	"time"
)

func TestDrawnIsFairAndReproducible(t *testing.T) {
	t.Parallel()
	drawn := 0
	const n = 20000
	for id := int64(1); id <= n; id++ {
		d := Drawn("surprise", id, 0.3)
		if d != Drawn("surprise", id, 0.3) {
			t.Fatalf("contact %d: two draws disagree", id)
		}
		if d {
			drawn++
		}
	}
	if share := float64(drawn) / n; share < 0.29 || share > 0.31 {
		t.Fatalf("drew %.3f of contacts, want 0.3 ± 0.01", share)
	}
	// Another offer draws other contacts.
	same := 0
	for id := int64(1); id <= 1000; id++ {
		if Drawn("surprise", id, 0.5) == Drawn("welcome-gift", id, 0.5) {
			same++
		}
	}
	if same > 600 || same < 400 {
		t.Fatalf("two offers agree on %d of 1000 contacts: the draws are not independent", same)
	}
	if Drawn("x", 1, 1) != true || Drawn("x", 1, 0) != false {
		t.Fatal("share 1 must draw everyone and 0 no one")
	}
}

func TestQuietHours(t *testing.T) {
	t.Parallel()
	set := Settings{QuietStart: 21 * 60, QuietEnd: 8 * 60, DefaultTimezone: "Europe/Berlin"}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tests := []struct {
		name   string
		now    time.Time
		traits map[string]any
		until  time.Time // zero: not quiet
	}{
		{"daytime", time.Date(2026, 6, 1, 12, 0, 0, 0, berlin), nil, time.Time{}},
		{"late evening", time.Date(2026, 6, 1, 22, 30, 0, 0, berlin), nil, time.Date(2026, 6, 2, 8, 0, 0, 0, berlin)},
		{"early morning", time.Date(2026, 6, 2, 6, 0, 0, 0, berlin), nil, time.Date(2026, 6, 2, 8, 0, 0, 0, berlin)},
		// The night clocks go forward (29 March 2026, 02:00 → 03:00):
		// 08:00 local is still 08:00, which is one hour less away.
		{"spring forward", time.Date(2026, 3, 28, 23, 0, 0, 0, berlin), nil, time.Date(2026, 3, 29, 8, 0, 0, 0, berlin)},
		{"fall back", time.Date(2026, 10, 24, 23, 0, 0, 0, berlin), nil, time.Date(2026, 10, 25, 8, 0, 0, 0, berlin)},
		{"the contact's own zone wins", time.Date(2026, 6, 1, 22, 30, 0, 0, berlin), map[string]any{"timezone": "America/New_York"}, time.Time{}},
	}
	for _, tt := range tests {
		until, q := quiet(set, tt.traits, tt.now, &zoneCache{})
		if q != !tt.until.IsZero() || (q && !until.Equal(tt.until)) {
			t.Errorf("%s: quiet=%v until %v, want until %v", tt.name, q, until, tt.until)
		}
	}
	if d := time.Date(2026, 3, 29, 8, 0, 0, 0, berlin).Sub(time.Date(2026, 3, 28, 23, 0, 0, 0, berlin)); d != 8*time.Hour {
		t.Fatalf("spring-forward night is %v, want 8h (9 wall-clock hours minus the skipped one)", d)
	}
}

func TestFrequencyCap(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	set := Settings{CapMax: 3, CapPer: 7 * 24 * time.Hour}
	days := func(ds ...int) []time.Time {
		var out []time.Time
		for _, d := range ds {
			out = append(out, now.Add(-time.Duration(d)*24*time.Hour))
		}
		return out
	}
	if _, ok := capped(set, days(1, 2), now); ok {
		t.Error("2 emails in the week: not capped")
	}
	until, ok := capped(set, days(1, 2, 6), now)
	if !ok || !until.Equal(now.Add(24*time.Hour+time.Second)) {
		t.Errorf("3 emails in the week: capped until %v, want when the 6-day-old one leaves the window", until)
	}
	if _, ok := capped(set, days(1, 2, 8), now); ok {
		t.Error("one of the 3 is older than the window: not capped")
	}
	if _, ok := capped(Settings{}, days(0, 0, 0, 0), now); ok {
		t.Error("no cap configured")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for a := 0; a < 12; a++ {
		d := backoff(a)
		base := time.Minute << min(a, 7)
		if base > 2*time.Hour {
			base = 2 * time.Hour
		}
		if d < base/2 || d >= base/2+base {
			t.Errorf("attempt %d: %v outside [%v, %v)", a, d, base/2, base/2+base)
		}
	}
}

func TestPaceHoldsTheRate(t *testing.T) {
	t.Parallel()
	s := &Sender{cfg: SenderConfig{Rate: 200}}
	start := time.Now()
	for i := 0; i < 41; i++ {
		if err := s.pace(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// 41 slots at 200/s span 200 ms; the first is immediate.
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("41 messages at 200/s took %v, want at least 200ms", el)
	}
}
