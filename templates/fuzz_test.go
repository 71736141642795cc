package templates

import (
	"errors"
	"strings"
	"testing"
)

// FuzzCompile compiles arbitrary subjects, texts and HTML bodies (seeds in
// testdata/fuzz/FuzzCompile) and renders what compiles: nothing may panic,
// every refusal is an *Error, and every render is bounded and leaves a
// subject that is a safe header.
func FuzzCompile(f *testing.F) {
	data := []*Data{
		typicalData(),
		{},
		{Contact: Contact{Traits: map[string]any{
			"name": "x\r\nBcc: y", "list": []any{1.0, "a", nil, map[string]any{"k": "v"}},
			"n": 3.0, "nested": map[string]any{"a": []any{"b"}}, "nil": nil,
		}}},
	}
	f.Fuzz(func(t *testing.T, subject, text, html string) {
		tmpl := Template{Name: "fuzz", Base: Content{Subject: subject, Text: text, HTML: html}}
		if len(subject) > 0 && len(html) > 0 {
			// Exercise tone overrides too.
			tmpl.Tones = map[string]Content{"formal": {Subject: html[:len(html)/2]}}
		}
		c, err := Compile(tmpl)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if e.Template != "fuzz" || e.Msg == "" {
				t.Fatalf("incomplete error %#v", e)
			}
			return
		}
		for _, d := range data {
			for _, tone := range []string{"", "formal"} {
				r, err := c.Render(tone, d)
				if err != nil {
					var e *Error
					if !errors.As(err, &e) {
						t.Fatalf("render error %T %v, want *Error", err, err)
					}
					if r != (Rendered{}) {
						t.Fatalf("render failed but returned %+v", r)
					}
					continue
				}
				if strings.ContainsAny(r.Subject, "\r\n\x00\u2028\u2029\u0085") {
					t.Fatalf("subject %q is not a safe header", r.Subject)
				}
				if len(r.Subject) > maxOutputSize || len(r.Text) > maxOutputSize || len(r.HTML) > maxOutputSize {
					t.Fatalf("output over the limit: %d, %d, %d bytes", len(r.Subject), len(r.Text), len(r.HTML))
				}
				if blank(html) && r.HTML != "" {
					t.Fatalf("text-only template rendered HTML %q", r.HTML)
				}
			}
		}
	})
}
