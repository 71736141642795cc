package humanize

import "testing"

func TestComma(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0"}, {7, "7"}, {999, "999"}, {1000, "1,000"}, {1204, "1,204"},
		{-1204, "-1,204"}, {1000000, "1,000,000"}, {-999999, "-999,999"},
	} {
		if got := Comma(c.n); got != c.want {
			t.Errorf("Comma(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}
