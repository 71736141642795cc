package templates

import (
	"errors"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	ok := Content{Subject: "Hello {{.Contact.FirstName}}", Text: "Hi", HTML: "<p>Hi</p>"}
	tests := []struct {
		name  string
		tmpl  Template
		want  Error
		error string
	}{
		{
			name:  "unknown field in base text",
			tmpl:  Template{Name: "welcome", Base: Content{Subject: "Hi", Text: "Hello\n  {{.Contact.Emial}}"}},
			want:  Error{Template: "welcome", Variant: "default", Part: "text", Line: 2, Column: 5, Msg: "unknown field .Contact.Emial; did you mean .Contact.Email?"},
			error: `template "welcome", tone "default", text, line 2, column 5: unknown field .Contact.Emial; did you mean .Contact.Email?`,
		},
		{
			name: "unknown field in untaken branch of tone html",
			tmpl: Template{Name: "welcome", Base: ok, Tones: map[string]Content{
				"formal": {HTML: "<p>Dear customer,</p>\n{{if false}}\n<p>{{ .Contact.Emial }}</p>{{end}}"},
			}},
			want:  Error{Template: "welcome", Variant: "formal", Part: "html", Line: 3, Column: 7, Msg: "unknown field .Contact.Emial; did you mean .Contact.Email?"},
			error: `template "welcome", tone "formal", html, line 3, column 7: unknown field .Contact.Emial; did you mean .Contact.Email?`,
		},
		{
			name: "unknown top-level field in subject",
			tmpl: Template{Name: "welcome", Base: Content{Subject: "Hi {{.Foo}}", Text: "x"}},
			want: Error{Template: "welcome", Variant: "default", Part: "subject", Line: 1, Column: 6, Msg: "unknown field .Foo"},
		},
		{
			name: "unknown field below with",
			tmpl: Template{Name: "offer", Base: Content{Subject: "Hi", Text: "{{with .Offer}}{{.Cod}}{{end}}"}},
			want: Error{Template: "offer", Variant: "default", Part: "text", Line: 1, Column: 18, Msg: "unknown field .Cod in Offer; did you mean .Code?"},
		},
		{
			name: "unknown field on a variable",
			tmpl: Template{Name: "v", Base: Content{Subject: "Hi", Text: "{{$c := .Contact}}{{$c.Emial}}"}},
			want: Error{Template: "v", Variant: "default", Part: "text", Line: 1, Column: 21, Msg: "unknown field $c.Emial in Contact; did you mean $c.Email?"},
		},
		{
			name: "unknown function",
			tmpl: Template{Name: "welcome", Base: Content{Subject: "Hi", Text: "a\nb {{shout .Contact.FirstName}}"}},
			want: Error{Template: "welcome", Variant: "default", Part: "text", Line: 2, Column: 5, Msg: `unknown function "shout"`},
		},
		{
			name: "internal function is unknown",
			tmpl: Template{Name: "welcome", Base: Content{Subject: "Hi", Text: "{{_wm_str 1}}"}},
			want: Error{Template: "welcome", Variant: "default", Part: "text", Line: 1, Column: 3, Msg: `unknown function "_wm_str"`},
		},
		{
			name: "syntax error",
			tmpl: Template{Name: "welcome", Base: Content{Subject: "Hi {{.Contact.FirstName}", Text: "x"}},
			want: Error{Template: "welcome", Variant: "default", Part: "subject", Line: 1, Column: 24, Msg: `bad character U+007D '}'`},
		},
		{
			name: "undefined variable",
			tmpl: Template{Name: "welcome", Base: Content{Subject: "Hi", Text: "x\n\n  {{ $name }}"}},
			want: Error{Template: "welcome", Variant: "default", Part: "text", Line: 3, Column: 6, Msg: `undefined variable "$name"`},
		},
		{
			name: "missing end",
			tmpl: Template{Name: "welcome", Base: Content{Subject: "Hi", Text: "{{if .Offer}}\nyes"}},
			want: Error{Template: "welcome", Variant: "default", Part: "text", Line: 2, Column: 4, Msg: "unexpected EOF"},
		},
		{
			name:  "missing subject",
			tmpl:  Template{Name: "welcome", Base: Content{Text: "x"}, Tones: map[string]Content{"formal": {Subject: "Dear"}}},
			want:  Error{Template: "welcome", Variant: "default", Part: "subject", Msg: "missing subject"},
			error: `template "welcome", tone "default", subject: missing subject`,
		},
		{
			name: "missing text and html",
			tmpl: Template{Name: "welcome", Base: Content{Subject: "Hi", Text: "  \n"}},
			want: Error{Template: "welcome", Variant: "default", Part: "text", Msg: "missing text: write a text body, or an HTML body to derive it from"},
		},
		{
			name: "missing name",
			tmpl: Template{Base: ok},
			want: Error{Msg: "missing name"},
		},
		{
			name: "reserved tone name",
			tmpl: Template{Name: "w", Base: ok, Tones: map[string]Content{"default": {Subject: "x"}}},
			want: Error{Template: "w", Variant: "default", Msg: `tone name "default" is reserved for the base content`},
		},
		{
			name: "range over a number",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: "{{range 1000000000}}x{{end}}"}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 9, Msg: "range over int: only lists and maps can be ranged over"},
		},
		{
			name: "range over a string",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: "{{range .Contact.Email}}x{{end}}"}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 9, Msg: "range over string: only lists and maps can be ranged over"},
		},
		{
			name: "define",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: "a\n{{define \"x\"}}{{template \"x\"}}{{end}}"}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 2, Column: 1, Msg: "{{define}} and {{block}} are not supported"},
		},
		{
			name: "template call",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: `{{template "footer"}}`}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 12, Msg: "{{template}} and {{block}} are not supported"},
		},
		{
			name: "method reaching the environment",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: "{{with .Offer}}{{.ExpiresAt.Local}}{{end}}"}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 18, Msg: "method Local of Time is not allowed"},
		},
		{
			name: "field with arguments",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: `{{.Contact.Email "x"}}`}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 3, Msg: ".Contact.Email is not a method but has arguments"},
		},
		{
			name: "wrong number of arguments",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: `{{money 12}}`}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 3, Msg: "wrong number of arguments for money: want 2, got 1"},
		},
		{
			name: "wrong argument type",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: `{{money "EUR" 12}}`}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 3, Msg: "argument 2 of money must be a string, not int"},
		},
		{
			name: "assigning $",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: `{{$ = 1}}`}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 3, Msg: "$ cannot be assigned"},
		},
		{
			name: "error found by the sample render",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: "x\n{{eq .Contact.Email 1}}"}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 2, Column: 3, Msg: "eq: incompatible types for comparison: string and int"},
		},
		{
			name: "html ending inside an attribute",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: "x", HTML: "<p>Hi</p>\n<a href=\"{{.UnsubscribeURL}}"}},
			want: Error{Template: "w", Variant: "default", Part: "html", Line: 2, Column: 29, Msg: "the HTML ends inside a tag, an attribute, a comment or a script"},
		},
		{
			name: "escaping function in html",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: "x", HTML: `<a href="/?e={{urlquery .Contact.Email}}">x</a>`}},
			want: Error{Template: "w", Variant: "default", Part: "html", Line: 1, Column: 16, Msg: "urlquery is not needed in HTML: values are escaped for where they appear"},
		},
		{
			name: "part too large",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: "x", HTML: strings.Repeat("a", 256<<10+1)}},
			want: Error{Template: "w", Variant: "default", Part: "html", Msg: "longer than 256 KB"},
		},
		{
			name: "output too large",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: `{{range .Contact.Traits}}{{range $.Contact.Traits}}{{range $.Contact.Traits}}{{printf "%60000s" "x"}}{{end}}{{end}}{{end}}`}},
			want: Error{Template: "w", Variant: "default", Part: "text", Msg: "rendered output exceeds 1048576 bytes"},
		},
		{
			name: "value too large",
			tmpl: Template{Name: "w", Base: Content{Subject: "Hi", Text: `{{if printf "%100000s" "x"}}{{end}}`}},
			want: Error{Template: "w", Variant: "default", Part: "text", Line: 1, Column: 6, Msg: "printf: value exceeds 65536 bytes"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(tt.tmpl)
			if err == nil {
				t.Fatalf("Compile succeeded (%v), want error %+v", c.Name(), tt.want)
			}
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if *got != tt.want {
				t.Errorf("error\n got %#v\nwant %#v", *got, tt.want)
			}
			if tt.error != "" && err.Error() != tt.error {
				t.Errorf("Error()\n got %s\nwant %s", err.Error(), tt.error)
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"trait lookups":         `{{.Contact.Traits.plan}} {{.Contact.Traits.address.city}} {{index .Contact.Traits "first-name"}}`,
		"untaken branch":        `{{if eq .Contact.Stage "advocacy"}}{{.Offer.Code}}{{else}}{{.Contact.Email}}{{end}}`,
		"range over traits":     `{{range $k, $v := .Contact.Traits}}{{$k}}={{$v}} {{end}}`,
		"range over a trait":    `{{range .Contact.Traits.orders}}{{.id}}{{else}}none{{end}}`,
		"with and else with":    `{{with .Contact.Traits.nick}}{{.}}{{else with .Contact.FirstName}}{{.}}{{end}}`,
		"time methods":          `{{with .Offer}}{{.ExpiresAt.Format "Jan 2"}} {{.ExpiresAt.Year}} {{.ExpiresAt.Weekday}}{{end}}`,
		"builtins":              `{{len .Contact.Email}} {{printf "%s!" .Contact.FirstName}} {{and .Tone .Contact.Email}} {{not .Offer}}`,
		"variables":             `{{$n := .Contact.FirstName}}{{$n = upper $n}}{{$n}} {{$.Contact.Email}}`,
		"pipelines":             `{{.Contact.FirstName | default "there" | title}} {{"plan" | trait}} {{"free" | trait "plan"}}`,
		"parenthesised":         `{{(index .Contact.Traits "x")}} {{(.Offer).Code}} {{len (print .Contact.Email)}}`,
		"break and continue":    `{{range .Contact.Traits}}{{if .}}{{continue}}{{end}}{{break}}{{end}}`,
		"comments and trimming": "{{/* note */}}\n{{- .Contact.Email -}}\n",
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile(Template{Name: "ok", Base: Content{Subject: "Hi", Text: text, HTML: "<p>" + text + "</p>"}})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTones(t *testing.T) {
	t.Parallel()
	c, err := Compile(Template{
		Name: "welcome",
		Base: Content{Subject: "Hi {{.Contact.FirstName}}", Text: "Welcome! ({{.Tone}})", HTML: "<p>Welcome!</p>"},
		Tones: map[string]Content{
			"formal":      {Subject: "Dear {{.Contact.FirstName}}"},
			"empathetic":  {HTML: "<p>We are here for you.</p>", Text: " "},
			"celebratory": {Text: "Party!"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(c.Tones(), ","), "celebratory,empathetic,formal"; got != want {
		t.Errorf("Tones() = %s, want %s", got, want)
	}
	if c.Name() != "welcome" {
		t.Errorf("Name() = %q", c.Name())
	}
	d := &Data{Contact: Contact{Email: "a@example.com", Traits: map[string]any{"first_name": "Ann"}}}
	tests := []struct {
		tone string
		want Rendered
	}{
		{"", Rendered{Subject: "Hi Ann", Text: "Welcome! ()", HTML: "<p>Welcome!</p>"}},
		{"formal", Rendered{Subject: "Dear Ann", Text: "Welcome! (formal)", HTML: "<p>Welcome!</p>"}},
		{"empathetic", Rendered{Subject: "Hi Ann", Text: "Welcome! (empathetic)", HTML: "<p>We are here for you.</p>"}},
		{"celebratory", Rendered{Subject: "Hi Ann", Text: "Party!", HTML: "<p>Welcome!</p>"}},
		{"friendly", Rendered{Subject: "Hi Ann", Text: "Welcome! (friendly)", HTML: "<p>Welcome!</p>"}},
	}
	for _, tt := range tests {
		got, err := c.Render(tt.tone, d)
		if err != nil {
			t.Fatalf("tone %q: %v", tt.tone, err)
		}
		if got != tt.want {
			t.Errorf("tone %q:\n got %#v\nwant %#v", tt.tone, got, tt.want)
		}
	}
	if d.Tone != "" || d.Contact.FirstName != "" {
		t.Errorf("Render modified its data: %+v", d)
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	d := &Data{
		Contact: Contact{
			Email:  "bob@example.com",
			Traits: map[string]any{"name": "bob  Smith", "company": "<script>alert(1)</script>", "evil": "\r\nBcc: x@y", "orders": 3.0},
		},
		UnsubscribeURL: "https://example.com/u?t=a&b=c",
	}
	tests := []struct {
		name string
		in   Content
		want Rendered
	}{
		{
			name: "trait escaped in html, verbatim in text",
			in:   Content{Subject: "For {{.Contact.Traits.company}}", Text: "{{.Contact.Traits.company}}", HTML: `<p>{{.Contact.Traits.company}}</p><a href="{{.UnsubscribeURL}}">u</a>`},
			want: Rendered{
				Subject: "For <script>alert(1)</script>",
				Text:    "<script>alert(1)</script>",
				HTML:    `<p>&lt;script&gt;alert(1)&lt;/script&gt;</p><a href="https://example.com/u?t=a&amp;b=c">u</a>`,
			},
		},
		{
			name: "header injection through a trait",
			in:   Content{Subject: "Hello {{.Contact.FirstName}}{{.Contact.Traits.evil}}", Text: "x"},
			want: Rendered{Subject: "Hello bob Bcc: x@y", Text: "x"},
		},
		{
			name: "missing traits are empty",
			in:   Content{Subject: "[{{.Contact.Traits.nope}}]", Text: "[{{.Contact.Traits.nope}}][{{index .Contact.Traits \"nope\"}}][{{.Contact.Traits.nope.deeper}}]", HTML: "<p>[{{.Contact.Traits.nope}}]</p>"},
			want: Rendered{Subject: "[]", Text: "[][][]", HTML: "<p>[]</p>"},
		},
		{
			name: "text only",
			in:   Content{Subject: "s", Text: "Hi {{.Contact.FirstName}}, you have {{.Contact.Traits.orders}} orders"},
			want: Rendered{Subject: "s", Text: "Hi bob, you have 3 orders"},
		},
		{
			name: "text derived from html",
			in: Content{Subject: "s", HTML: `<html><head><title>x</title><style>p{}</style></head><body>
<h1>Hi {{.Contact.FirstName}}</h1><p>Your   orders:</p><ul><li>one</li><li>two &amp; three</li></ul>
<p><a href="{{.UnsubscribeURL}}">Unsubscribe</a></p><script>var x = 1;</script></body></html>`},
			want: Rendered{
				Subject: "s",
				Text:    "Hi bob\n\nYour orders:\n\n- one\n- two & three\n\nUnsubscribe (https://example.com/u?t=a&b=c)",
				HTML: `<html><head><title>x</title><style>p{}</style></head><body>
<h1>Hi bob</h1><p>Your   orders:</p><ul><li>one</li><li>two &amp; three</li></ul>
<p><a href="https://example.com/u?t=a&amp;b=c">Unsubscribe</a></p><script>var x = 1;</script></body></html>`,
			},
		},
		{
			name: "offer absent",
			in:   Content{Subject: "s", Text: "{{with .Offer}}Code {{.Code}}{{else}}No offer{{end}}"},
			want: Rendered{Subject: "s", Text: "No offer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(Template{Name: "t", Base: tt.in})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Render("", d)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestRenderLimits(t *testing.T) {
	t.Parallel()
	list := make([]any, 200)
	for i := range list {
		list[i] = i
	}
	big := strings.Repeat("x", 4000)
	d := &Data{Contact: Contact{Traits: map[string]any{"list": list, "big": big, "n": 5}}}
	tests := []struct {
		name string
		text string
		want string
	}{
		{"nested loops", `{{range .Contact.Traits.list}}{{range $.Contact.Traits.list}}{{range $.Contact.Traits.list}}{{end}}{{end}}{{end}}`,
			`template "t", tone "default", text, line 1, column 39: too much work: the loops or the text they build exceed the render's budget`},
		{"string building", `{{range .Contact.Traits.list}}{{range $.Contact.Traits.list}}{{if printf "%60000s" "x"}}{{end}}{{end}}{{end}}`,
			`template "t", tone "default", text, line 1, column 67: printf: too much work: the loops or the text they build exceed the render's budget`},
		{"output", `{{range .Contact.Traits.list}}{{$.Contact.Traits.big}}{{range $.Contact.Traits.list}}{{$.Contact.Traits.big}}{{end}}{{end}}`,
			`template "t", tone "default", text: rendered output exceeds 1048576 bytes`},
		{"range over a number trait", `{{range .Contact.Traits.n}}x{{end}}`,
			`template "t", tone "default", text, line 1, column 9: range over int: only lists and maps can be ranged over`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(Template{Name: "t", Base: Content{Subject: "s", Text: tt.text}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Render("", d)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}
