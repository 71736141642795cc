package journey

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestContentErrorsNamePlaces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown field in an inline subject",
			"templates:\n  - name: hi\n    subject: \"Hi {{.Contact.Emial}}\"\n    text: ok\n",
			[]string{`j.yaml:3:`, `template "hi", subject: `, `Emial`}},
		{"unknown field in a block text, tone variant",
			"templates:\n  - name: hi\n    subject: Hi\n    text: ok\n    tones:\n      formal:\n        text: |\n          Dear customer,\n          {{.Contact.Nmae}}\n",
			[]string{`j.yaml:9:`, `template "hi", tone "formal", text: `, `Nmae`}},
		{"missing subject", "templates:\n  - name: hi\n    text: ok\n", []string{`j.yaml:2:5: template "hi"`, `subject`}},
		{"default tone not last", "tones:\n  - tone: friendly\n  - tone: formal\n    when: traits.company != nil\n",
			[]string{`j.yaml:2:5: tone rule at line 2: only the last tone rule may have no when`, `j.yaml:3:5: tone rule at line 3: the last tone rule is the default`}},
		{"bad tone condition", "tones:\n  - tone: empathetic\n    when: count(\"ticket\", 14)\n  - tone: friendly\n",
			[]string{`j.yaml:3:27: tone "empathetic": when: `}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := parseErrors(t, tt.src).Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors %q lack %q", msg, w)
				}
			}
		})
	}
}

func TestTemplateBodyFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "hi.html"), []byte("<p>Hello\n{{.Contact.Nope}}</p>"), 0o644)
	p := filepath.Join(dir, "journey.yaml")
	_ = os.WriteFile(p, []byte("templates:\n  - name: hi\n    subject: Hi\n    html: {file: hi.html}\n"), 0o644)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "hi.html")+":2:") {
		t.Fatalf("err = %v, want the error placed in hi.html line 2", err)
	}
	_ = os.WriteFile(filepath.Join(dir, "hi.html"), []byte("<p>Hello {{.Contact.FirstName}}</p>"), 0o644)
	j, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Templates) != 1 || !strings.Contains(j.Templates[0].Base.HTML, "Hello") {
		t.Fatalf("templates %+v", j.Templates)
	}
}
