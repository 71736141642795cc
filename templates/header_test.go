package templates

import "testing"

func TestSanitizeHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"Hello Ann", "Hello Ann"},
		{"", ""},
		{"Hello\r\nBcc: x@y", "Hello Bcc: x@y"},
		{"Hello\nBcc: x@y\n", "Hello Bcc: x@y"},
		{"\r\nBcc: x@y", "Bcc: x@y"},
		{"a\x00b\x01c\x1bd\x7fe", "abcde"},
		{"tab\there", "tab here"},
		{"line\u2028sep\u2029par\u0085nel", "line sep par nel"},
		{"c1\u0080\u009fcontrols", "c1controls"},
		{"  spaces   inside  ", "spaces inside"},
		{"Café ☕ — 50 %", "Café ☕ — 50 %"},
		{"bad\xffutf8", "badutf8"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			if got := SanitizeHeader(tt.in); got != tt.want {
				t.Errorf("SanitizeHeader(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
