package templates

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// Templates built to exhaust the machine are refused when saved, or
// stopped while rendering with an error naming the place, and neither
// saving nor rendering one allocates more than a bounded amount: huge
// loops, recursion through template calls, strings doubled in variables,
// and fmt verbs that would build gigabytes before any size check.
func TestHostileTemplatesAreBounded(t *testing.T) {
	bio := strings.Repeat("b", 32<<10)
	list := make([]any, 1000)
	for i := range list {
		list[i] = float64(i)
	}
	data := &Data{Contact: Contact{Email: "ann@example.com", Traits: map[string]any{"first_name": "Ann", "bio": bio, "list": list}}}
	manyVerbs := strings.Repeat("%[1]v", 30000)
	for _, tc := range []struct {
		name, text string
		msg        string // in the error, from Compile or Render
	}{
		{"recursion through a defined template", `{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}`, "not supported"},
		{"recursion through a block", `{{block "b" .}}{{template "b" .}}{{end}}`, "not supported"},
		{"a template call", `{{template "other"}}`, "not supported"},
		{"range over a huge number", `{{range 1000000000}}x{{end}}`, "only lists and maps can be ranged over"},
		{"nested loops over a long list", `{{range .Contact.Traits.list}}{{range $.Contact.Traits.list}}{{range $.Contact.Traits.list}}x{{end}}{{end}}{{end}}`, "too much work"},
		{"a string doubled in a variable", `{{$x := "ab"}}{{range .Contact.Traits.list}}{{$x = printf "%s%s" $x $x}}{{end}}{{$x}}`, "value exceeds"},
		{"a long trait repeated in one printf", `{{printf "` + manyVerbs + `" .Contact.Traits.bio}}`, "more than 32 verbs"},
		{"a long trait given to print many times", `{{print` + strings.Repeat(" .Contact.Traits.bio", 2000) + `}}`, "2000 values, at most 32"},
		{"huge padding", `{{printf "` + strings.Repeat("%999999d", 30) + `"` + strings.Repeat(" 1", 30) + `}}`, "value exceeds"},
		{"padding from the values", `{{printf "%*d" 999999 1}}`, "(*) are not allowed"},
		{"a long trait escaped many times", `{{html` + strings.Repeat(" .Contact.Traits.bio", 100) + `}}`, "100 values, at most 32"},
		{"output over the limit", `{{range .Contact.Traits.list}}{{$.Contact.Traits.bio}}{{end}}`, "exceeds"},
		{"a source over the limit", strings.Repeat("x", 300<<10), "longer than 256 KB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			c, err := Compile(Template{Name: "hostile", Base: Content{Subject: "Hi", Text: tc.text}})
			if err == nil {
				_, err = c.Render("", data)
			}
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("compiled and rendered")
			}
			var e *Error
			if !errors.As(err, &e) || e.Template != "hostile" || e.Part != PartText {
				t.Fatalf("error %v (%T), want an *Error naming the template and part", err, err)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("error %q, want it to say %q", e.Msg, tc.msg)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("saving and rendering allocated %d MB", alloc>>20)
			}
		})
	}
}

// Formats people write pass the printf checks.
func TestPrintfFormatsPeopleWrite(t *testing.T) {
	for _, f := range []string{"%s", "%d items", "%.2f", "%08.3f", "%-10s|", "%[2]s %[1]s", "100%%", "%x", "%+d", "%#v", "% d", "%6.2f%%"} {
		if err := checkFormat(f); err != nil {
			t.Errorf("%q: %v", f, err)
		}
	}
	for _, f := range []string{"%65537d", "%.70000f", "%*d", "%.*f", strings.Repeat("%s", 33)} {
		if err := checkFormat(f); err == nil {
			t.Errorf("%q accepted", f)
		}
	}
}
