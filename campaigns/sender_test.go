package campaigns

import (
	"context"
	"testing"

	"github.com/waymark/waymark/templates"
)

// journeyStore is a send store that knows only the journey: its version,
// definitions and tone rules, counting the loads.
type journeyStore struct {
	SendStore
	version string
	defs    Definitions
	tones   []templates.ToneRuleSource
	loads   int
}

func (s *journeyStore) JourneyVersion(context.Context) (string, error) { return s.version, nil }

func (s *journeyStore) Definitions(context.Context) (Definitions, error) {
	s.loads++
	return s.defs, nil
}

func (s *journeyStore) ToneRules(context.Context) ([]templates.ToneRuleSource, error) {
	return s.tones, nil
}

// The sender compiles holds and tone rules once per journey version, and
// again when the version changes (or when the store cannot say).
func TestSenderCompilesOncePerJourneyVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &journeyStore{
		version: "v1",
		defs:    Definitions{Holds: []Hold{{Name: "open-ticket", When: `count("support_ticket_opened", "14d") > 0`}}},
		tones:   []templates.ToneRuleSource{{Tone: "formal", When: `traits.company != nil`}, {Tone: "friendly"}},
	}
	s := NewSender(st, nil, nil, nil, nil, SenderConfig{})
	first, err := s.journeyNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.holds) != 1 || len(first.tones) != 2 || first.tones[0].When == nil || first.tones[1].When != nil || len(first.needs) != 1 {
		t.Fatalf("v1: holds %v, tones %+v, needs %v", first.holds, first.tones, first.needs)
	}
	again, err := s.journeyNow(ctx)
	if err != nil || again != first || st.loads != 1 {
		t.Fatalf("the same version: %p (was %p), %d loads, err %v; want the same, 1 load", again, first, st.loads, err)
	}
	st.version = "v2"
	st.tones = []templates.ToneRuleSource{{Tone: "plain"}}
	next, err := s.journeyNow(ctx)
	if err != nil || next == first || st.loads != 2 || len(next.tones) != 1 || next.tones[0].Tone != "plain" {
		t.Fatalf("a new version: tones %+v, %d loads, err %v; want plain, 2 loads", next.tones, st.loads, err)
	}
	st.version = ""
	for range 2 {
		if _, err := s.journeyNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st.loads != 4 {
		t.Fatalf("a store without versions: %d loads, want 4 (every pass)", st.loads)
	}
}
