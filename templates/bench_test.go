package templates

import (
	"strings"
	"testing"
	"time"
)

// typicalHTML is a ~2 KB marketing email with a few fields and helpers.
const typicalHTML = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Contact.FirstName}}</title>
<style>body{font-family:Helvetica,Arial,sans-serif;color:#222}.btn{background:#0a7;color:#fff;padding:12px 20px;border-radius:4px;text-decoration:none}</style>
</head>
<body>
<div style="display:none">Your code inside &zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;</div>
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">
<table role="presentation" width="600" cellpadding="0" cellspacing="0">
<tr><td><h1>Thank you, {{.Contact.FirstName | default "friend"}}!</h1></td></tr>
<tr><td>
<p>You have been with us for a while now, and we wanted to say thank you with something a little special.
As one of our most loyal customers at {{trait "company" "your company"}}, you get an exclusive reward.</p>
{{with .Offer}}<p>Use the code <strong>{{.Code}}</strong> at checkout before {{date "2 January 2006" .ExpiresAt}}
to get {{money 15 "EUR"}} off your next order.</p>
<p><a class="btn" href="https://shop.example.com/redeem?code={{.Code}}">Redeem my reward</a></p>{{end}}
<p>Here is what other customers loved this month:</p>
<ul>
<li>The everyday tote, in three new colours</li>
<li>Merino socks, now in a pack of five</li>
<li>Our bestselling travel mug</li>
</ul>
<p>Every order ships free within the EU, and you can return anything within 30 days, no questions asked.
If something is not quite right, our team in Paris is happy to help from Monday to Friday.</p>
<p>Questions? Just reply to this email, a real person reads every message.</p>
<p>Warm regards,<br>The Example Shop team</p>
</td></tr>
<tr><td style="font-size:12px;color:#777">
<p>You receive this email because you are a customer of Example Shop ({{.Contact.Email}}).
<a href="{{.PreferencesURL}}">Email preferences</a> &middot; <a href="{{.UnsubscribeURL}}">Unsubscribe</a></p>
<p>Example Shop, 1 Example Street, 75001 Paris, France</p>
</td></tr>
</table>
</td></tr></table>
</body></html>`

const typicalText = `Thank you, {{.Contact.FirstName | default "friend"}}!

You have been with us for a while now, and we wanted to say thank you with
something a little special. As one of our most loyal customers at
{{trait "company" "your company"}}, you get an exclusive reward.
{{with .Offer}}
Use the code {{.Code}} at checkout before {{date "2 January 2006" .ExpiresAt}}
to get {{money 15 "EUR"}} off your next order:
https://shop.example.com/redeem?code={{.Code}}
{{end}}
Questions? Just reply to this email, a real person reads every message.

Warm regards,
The Example Shop team

Email preferences: {{.PreferencesURL}}
Unsubscribe: {{.UnsubscribeURL}}`

func typicalTemplate() Template {
	return Template{
		Name: "surprise",
		Base: Content{
			Subject: "{{title .Contact.FirstName}}, a little thank-you from us",
			Text:    typicalText,
			HTML:    typicalHTML,
		},
		Tones: map[string]Content{
			"formal": {Subject: "A token of our appreciation, {{.Contact.FirstName | default \"valued customer\"}}"},
		},
	}
}

func typicalData() *Data {
	return &Data{
		Contact: Contact{
			Email:  "jane.doe@example.org",
			Stage:  "retention",
			Traits: map[string]any{"name": "jane Doe", "company": "Acme & Co", "plan": "pro"},
		},
		Offer:          &Offer{Name: "surprise", Code: "THX-93KD2", ExpiresAt: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)},
		UnsubscribeURL: "https://waymark.example.com/u/eyJzIjoxMjN9.sig",
		PreferencesURL: "https://waymark.example.com/p/eyJzIjoxMjN9.sig",
	}
}

// reportRate reports renders per second of wall time and per second of
// CPU time used by the whole process (including the garbage collector):
// the second does not drop when other processes share the machine.
func reportRate(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "renders/s")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "renders/cpu-s")
	}
}

func BenchmarkRenderMultipart(b *testing.B) {
	c, err := Compile(typicalTemplate())
	if err != nil {
		b.Fatal(err)
	}
	if n := len(typicalHTML); n < 1800 || n > 2600 {
		b.Fatalf("typical HTML is %d bytes, want about 2 KB", n)
	}
	d := typicalData()
	var r Rendered
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if err := c.RenderTo(&r, "friendly", d); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, cpu0)
	if !strings.Contains(r.HTML, "THX-93KD2") || !strings.Contains(r.Text, "THX-93KD2") {
		b.Fatalf("unexpected render: %+v", r)
	}
}

// BenchmarkRenderDerivedText renders the same email with the text part
// derived from the HTML.
func BenchmarkRenderDerivedText(b *testing.B) {
	t := typicalTemplate()
	t.Base.Text = ""
	c, err := Compile(t)
	if err != nil {
		b.Fatal(err)
	}
	d := typicalData()
	var r Rendered
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if err := c.RenderTo(&r, "formal", d); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, cpu0)
}

func BenchmarkRenderParallel(b *testing.B) {
	c, err := Compile(typicalTemplate())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := typicalData()
		var r Rendered
		for pb.Next() {
			if err := c.RenderTo(&r, "", d); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	t := typicalTemplate()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(t); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHTMLToText(b *testing.B) {
	c, err := Compile(typicalTemplate())
	if err != nil {
		b.Fatal(err)
	}
	r, err := c.Render("", typicalData())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(r.HTML)))
	b.ReportAllocs()
	for b.Loop() {
		HTMLToText(r.HTML)
	}
}
