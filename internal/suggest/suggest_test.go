package suggest

import "testing"

func TestClosest(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s    string
		list []string
		want string
	}{
		{"Firstname", []string{"Email", "FirstName", "Stage", "Traits"}, "FirstName"},
		{"stags", []string{"serve", "stages", "tick"}, "stages"},
		{"welcom", []string{"welcome", "tips"}, "welcome"},
		{"templ", []string{"templates", "tones"}, "templates"},
		{"angry", []string{"friendly", "formal"}, ""},
		{"x", []string{"a", "b"}, ""},
	} {
		if got := Closest(tt.s, tt.list); got != tt.want {
			t.Errorf("Closest(%q, %v) = %q, want %q", tt.s, tt.list, got, tt.want)
		}
	}
}
