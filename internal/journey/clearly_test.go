package journey

import (
	"strings"
	"testing"
)

// A YAML mistake is reported at the line that is wrong, not where the
// block around it starts.
func TestYAMLMistakeAtItsLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src, want string
	}{
		{"a list item indented one space less",
			"tones:\n  - tone: friendly\nsequences:\n  - name: welcome\n    trigger: {enter_stage: awareness}\n    steps:\n      - {after: 0h, template: welcome}\n     - {after: 48h, template: tips}\n",
			"j.yaml:8:6: not valid YAML: did not find expected key (in the block that starts on line 3); check this line's indentation: 5 spaces, against 6 on line 7"},
		{"a key indented one space less, eleven lines down",
			"rules:\n  - name: a\n    from: [awareness]\n    to: consideration\n    when: ever(\"x\")\n\n  # the second rule\n  - name: b\n    from: [awareness]\n    to: decision\n    when: ever(\"y\")\n  - name: c\n   from: [awareness]\n    to: retention\n    when: ever(\"z\")\n",
			"j.yaml:13:4: not valid YAML: did not find expected '-' indicator (in the block that starts on line 1); check this line's indentation: 3 spaces, against 2 on line 12"},
		{"a key indented too far",
			"templates:\n  - name: a\n    subject: Hi\n    text: Hello\n      html: <p>x</p>\n",
			"j.yaml:5:7: not valid YAML: mapping values are not allowed in this context; check this line's indentation: 6 spaces, against 4 on line 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("j.yaml", []byte(tt.src))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant %s", err, tt.want)
			}
		})
	}
}

// A misspelt field gets a suggestion, and the template it breaks is not
// then reported missing where a sequence uses it.
func TestMisspeltFieldIsOneMistake(t *testing.T) {
	t.Parallel()
	src := "tones:\n  - tone: friendly\nsequences:\n  - name: welcome\n    trigger: {enter_stage: awareness}\n    steps:\n      - {after: 0h, template: welcome}\n      - {after: 1d, template: welcom}\ntemplates:\n  - {name: welcome, subject: Hi, text: \"Hello {{.Contact.Firstname}}\"}\n"
	_, err := Parse("j.yaml", []byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	if !strings.Contains(msg, "unknown field .Contact.Firstname; did you mean .Contact.FirstName?") {
		t.Errorf("no suggestion for Firstname:\n%s", msg)
	}
	if strings.Contains(msg, `no template "welcome"`) {
		t.Errorf("a false 'no template' for the template that has the mistake:\n%s", msg)
	}
	if !strings.Contains(msg, `no template "welcom" (defined: welcome); did you mean "welcome"?`) {
		t.Errorf("a misspelt template name gets no suggestion:\n%s", msg)
	}
	if n := strings.Count(msg, "\n") + 1; n != 2 {
		t.Errorf("%d errors, want 2:\n%s", n, msg)
	}
}
