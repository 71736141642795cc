package journey

import (
	"strings"
	"testing"
)

// A tone variant that overrides the text but not the HTML (or the HTML but
// not the text) would send one tone's words in one part and another's in
// the other: refused, unless the variant says it keeps the base's part.
func TestToneVariantPartsComeFromOneVariant(t *testing.T) {
	t.Parallel()
	const head = "templates:\n  - name: welcome\n    subject: Welcome\n    text: Start a subscription\n    html: <p>Start a subscription</p>\n    tones:\n      celebratory:\n"
	tests := []struct {
		name, variant string
		want          string // "" = accepted
	}{
		{"text without html", "        text: You are a subscriber!\n",
			`j.yaml:7:7: template "welcome", tone "celebratory": gives its own text but not its own html`},
		{"html without text", "        html: <p>You are a subscriber!</p>\n",
			`j.yaml:7:7: template "welcome", tone "celebratory": gives its own html but not its own text`},
		{"both parts", "        text: You are a subscriber!\n        html: <p>You are a subscriber!</p>\n", ""},
		{"subject only", "        subject: Welcome, subscriber!\n", ""},
		{"keeps the base html on purpose", "        text: You are a subscriber!\n        inherit: [html]\n", ""},
		{"inherit names the wrong part", "        text: You are a subscriber!\n        inherit: [text]\n",
			`gives its own text but not its own html`},
		{"inherit of something else", "        text: You are a subscriber!\n        html: <p>x</p>\n        inherit: [subject]\n",
			`j.yaml:10:19: template "welcome", tone "celebratory": inherit: "subject" is not a part this check concerns`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("j.yaml", []byte(head+tt.variant+"tones:\n  - tone: celebratory\n    when: stage == \"advocacy\"\n  - tone: friendly\n"))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}

	// A text-only template: a variant's text alone is the whole email.
	if _, err := Parse("j.yaml", []byte("templates:\n  - name: note\n    subject: Hi\n    text: hello\n    tones:\n      formal:\n        text: Good day\ntones:\n  - tone: formal\n    when: stage == \"advocacy\"\n  - tone: friendly\n")); err != nil {
		t.Fatalf("text-only template refused: %v", err)
	}
}
