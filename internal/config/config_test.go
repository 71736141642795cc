package config

import (
	"errors"
	"testing"
)

func TestLoadNamesTheBadVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string // the variable named, "" if valid
	}{
		{"defaults", nil, ""},
		{"bad http addr", map[string]string{"WAYMARK_HTTP_ADDR": "8080"}, "WAYMARK_HTTP_ADDR"},
		{"bad smtp scheme", map[string]string{"WAYMARK_SMTP_URL": "http://x"}, "WAYMARK_SMTP_URL"},
		{"bad smtp tls", map[string]string{"WAYMARK_SMTP_URL": "smtp://x?tls=maybe"}, "WAYMARK_SMTP_URL"},
		{"bad from", map[string]string{"WAYMARK_FROM": "not an address"}, "WAYMARK_FROM"},
		{"bad public url", map[string]string{"WAYMARK_PUBLIC_URL": "example.com"}, "WAYMARK_PUBLIC_URL"},
		{"short secret", map[string]string{"WAYMARK_SECRET": "abc"}, "WAYMARK_SECRET"},
		{"dkim without key", map[string]string{"WAYMARK_DKIM_DOMAIN": "x.com", "WAYMARK_DKIM_SELECTOR": "s1"}, "WAYMARK_DKIM_KEY_FILE"},
		{"dkim key missing", map[string]string{"WAYMARK_DKIM_DOMAIN": "x.com", "WAYMARK_DKIM_SELECTOR": "s1", "WAYMARK_DKIM_KEY_FILE": "/nonexistent.pem"}, "WAYMARK_DKIM_KEY_FILE"},
		{"good", map[string]string{"WAYMARK_SMTP_URL": "smtp://u:p@mail.example.com:2525?tls=none&pool=8", "WAYMARK_FROM": "Shop <news@shop.example>", "WAYMARK_PUBLIC_URL": "https://shop.example/"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c Config
			err := c.Load(func(k string) string { return tt.env[k] })
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Var != tt.want {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestParseSMTPURL(t *testing.T) {
	t.Parallel()
	s, err := ParseSMTPURL("smtp://user:p%40ss@mail.example.com?tls=starttls&pool=4&rate=100")
	if err != nil {
		t.Fatal(err)
	}
	want := SMTP{Host: "mail.example.com", Port: 587, Username: "user", Password: "p@ss", TLS: "starttls", PoolSize: 4, Rate: 100}
	if *s != want {
		t.Fatalf("got %+v, want %+v", *s, want)
	}
	s, _ = ParseSMTPURL("smtps://mail.example.com")
	if s.TLS != "tls" || s.Port != 465 {
		t.Fatalf("smtps: %+v", s)
	}
}
