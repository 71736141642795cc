package bench

import (
	"testing"

	"github.com/waymark/waymark/internal/journey"
)

// The send benchmark's journeys pass the checks apply makes (a check
// added since once broke `waymark-bench send -body newsletter`).
func TestSendJourneysPassTheChecks(t *testing.T) {
	for _, body := range []string{"short", "newsletter"} {
		src, err := SendJourney(body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := journey.Parse("bench-send.yaml", []byte(src)); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}
