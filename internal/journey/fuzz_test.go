package journey

import (
	"testing"
	"time"
)

// FuzzParse: any journey file is either accepted or refused with errors
// that name a place; it never panics, and parsing stays fast.
func FuzzParse(f *testing.F) {
	f.Add([]byte(designJourney))
	f.Add([]byte(designExample))
	f.Add([]byte("rules:\n  - {name: a, from: awareness, to: decision, when: 'ever(\"x\")'}\n"))
	f.Add([]byte("templates:\n  - {name: t, subject: '{{.Contact.FirstName}}', text: x, tones: {formal: {text: y}}}\n"))
	f.Add([]byte("sequences:\n  - name: s\n    trigger: {anniversary: birthday}\n    steps: [{after: 0h, template: t}]\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("rules: [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		j, err := Parse("f.yaml", data)
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("parsing took %v", el)
		}
		if err != nil {
			errs, ok := err.(Errors)
			if !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			for _, e := range errs {
				if e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("error without a place: %+v", e)
				}
			}
			return
		}
		if j == nil {
			t.Fatal("no journey and no error")
		}
	})
}
