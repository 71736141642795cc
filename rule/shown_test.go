package rule

import (
	"testing"
)

func TestShownValues(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{3.0, "3"}, {0.25, "0.25"}, {12.3456, "12.35"}, {3.6421778819444444e-06, "3.6e-06"},
		{"advocacy", "advocacy"}, {nil, "<nil>"}, {true, "true"},
	} {
		if got := shown(c.in); got != c.want {
			t.Errorf("shown(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
