package templates

import (
	"testing"
	"time"
)

func TestHelpers(t *testing.T) {
	t.Parallel()
	d := &Data{
		Contact: Contact{
			Email: "ann@example.com",
			Traits: map[string]any{
				"name": "ann-marie o'neil", "birthday": "1990-05-12", "signed_up_at": "2024-03-01T22:30:00Z",
				"ltv": 1234567.891, "blank": "  ", "zero": 0.0, "since": 1700000000.0,
			},
		},
		Offer: &Offer{Code: "X1", ExpiresAt: time.Date(2026, 7, 1, 22, 30, 0, 0, time.UTC)},
	}
	tests := []struct {
		in, want string
	}{
		{`{{money 1234.5 "EUR"}}`, "€1,234.50"},
		{`{{money 1234.5 "usd"}}`, "$1,234.50"},
		{`{{money 0.5 "GBP"}}`, "£0.50"},
		{`{{money 1234.5 "CHF"}}`, "1,234.50 CHF"},
		{`{{money -1234567.891 "EUR"}}`, "-€1,234,567.89"},
		{`{{money 999.999 "EUR"}}`, "€1,000.00"},
		{`{{money 12 "EUR"}}`, "€12.00"},
		{`{{money .Contact.Traits.ltv "EUR"}}`, "€1,234,567.89"},
		{`{{money "19.9" "EUR"}}`, "€19.90"},
		{`[{{money .Contact.Traits.missing "EUR"}}]`, "[]"},
		{`{{date "2 January 2006" .Offer.ExpiresAt}}`, "1 July 2026"},
		{`{{.Offer.ExpiresAt | date "Mon 2 Jan"}}`, "Wed 1 Jul"},
		{`{{date "2 January" .Contact.Traits.birthday}}`, "12 May"},
		{`{{date "2006-01-02 15:04" .Contact.Traits.signed_up_at}}`, "2024-03-01 22:30"},
		{`{{date "2006-01-02" .Contact.Traits.since}}`, "2023-11-14"},
		{`[{{date "2006" .Contact.Traits.missing}}]`, "[]"},
		{`{{dateIn "2 January 2006 15:04" "Europe/Paris" .Offer.ExpiresAt}}`, "2 July 2026 00:30"},
		{`{{dateIn "2 January 15:04 MST" "America/New_York" .Contact.Traits.signed_up_at}}`, "1 March 17:30 EST"},
		{`{{default "there" .Contact.FirstName}}`, "ann-marie"},
		{`{{default "there" .Contact.Traits.missing}}`, "there"},
		{`{{.Contact.Traits.blank | default "there"}}`, "there"},
		{`{{.Contact.Traits.zero | default 7}}`, "0"},
		{`{{title .Contact.Traits.name}}`, "Ann-Marie O'neil"},
		{`{{title "élodie du pont"}}`, "Élodie Du Pont"},
		{`{{upper .Contact.FirstName}} {{lower "ÀB"}} [{{trim "  x  "}}]`, "ANN-MARIE àb [x]"},
		{`{{trait "name" "friend"}}|{{trait "missing" "friend"}}|{{trait "missing"}}|{{trait "blank" "b"}}`, "ann-marie o'neil|friend||b"},
		{`{{"friend" | trait "missing"}}`, "friend"},
		{`{{if eq (trait "plan" "free") "free"}}free{{end}}`, "free"},
		{`{{printf "%s <%s>" .Contact.FirstName .Contact.Email}}`, "ann-marie <ann@example.com>"},
		{`{{.Contact.Email | printf "<%s>"}} {{print 1 "a"}} {{urlquery "a b&c"}} {{html "<b>"}}`, "<ann@example.com> 1a a+b%26c &lt;b&gt;"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(Template{Name: "h", Base: Content{Subject: "s", Text: tt.in}})
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.Render("", d)
			if err != nil {
				t.Fatal(err)
			}
			if r.Text != tt.want {
				t.Errorf("got %q, want %q", r.Text, tt.want)
			}
		})
	}
}

func TestHelperErrors(t *testing.T) {
	t.Parallel()
	d := &Data{Contact: Contact{Traits: map[string]any{"birthday": "soon", "ltv": "lots"}}}
	tests := []struct {
		in, want string
	}{
		{`{{date "2 Jan" .Contact.Traits.birthday}}`, `template "h", tone "default", text, line 1, column 29: date: "soon" is not a date (want e.g. 2006-01-02 or RFC 3339)`},
		{`{{money .Contact.Traits.ltv "EUR"}}`, `template "h", tone "default", text, line 1, column 29: money: "lots" is not a number`},
		{`{{dateIn "2 Jan" .Contact.Traits.ltv "2024-01-01"}}`, `template "h", tone "default", text, line 1, column 29: dateIn: unknown time zone "lots"`},
		{`{{dateIn "2 Jan" "Local" "2024-01-01"}}`, `template "h", tone "default", text, line 1, column 29: dateIn: unknown time zone "Local"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(Template{Name: "h", Base: Content{Subject: "s", Text: "{{if .Contact.Traits.ltv}}" + tt.in + "{{end}}"}})
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

func TestFirstName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		traits map[string]any
		want   string
	}{
		{"nil", nil, ""},
		{"first_name", map[string]any{"first_name": " Ann ", "firstName": "X", "name": "Y Z"}, "Ann"},
		{"firstName", map[string]any{"firstName": "Bea", "name": "Y Z"}, "Bea"},
		{"blank first_name", map[string]any{"first_name": " ", "name": "Carl Gustav Jung"}, "Carl"},
		{"name", map[string]any{"name": "  Dora\tMaar"}, "Dora"},
		{"not a string", map[string]any{"first_name": 3, "name": []any{"x"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := FirstName(tt.traits); got != tt.want {
				t.Errorf("FirstName() = %q, want %q", got, tt.want)
			}
		})
	}
}
