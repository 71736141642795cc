package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	received := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		body      string
		kind      string
		wantField string // "" means valid
		check     func(t *testing.T, m Message)
	}{
		{name: "track with userId", kind: "track",
			body: `{"userId":"u1","event":"order_completed","properties":{"revenue":49.9},"messageId":"m1","timestamp":"2026-11-20T10:00:00Z"}`,
			check: func(t *testing.T, m Message) {
				if m.Name != "order_completed" || m.UserID != "u1" || m.MessageID != "m1" || string(m.Properties) != `{"revenue":49.9}` {
					t.Errorf("got %+v", m)
				}
				if want := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC); !m.Timestamp.Equal(want) {
					t.Errorf("timestamp %v, want %v", m.Timestamp, want)
				}
			}},
		{name: "numeric userId", kind: "track", body: `{"userId":42,"event":"x"}`,
			check: func(t *testing.T, m Message) {
				if m.UserID != "42" {
					t.Errorf("userId %q, want 42", m.UserID)
				}
			}},
		{name: "clock skew corrected from sentAt", kind: "track",
			body: `{"anonymousId":"a","event":"x","originalTimestamp":"2026-11-23T11:00:00Z","sentAt":"2026-11-23T11:00:10Z"}`,
			check: func(t *testing.T, m Message) {
				// The client's clock runs 1h behind: the event happened 10s
				// before the request arrived.
				if want := received.Add(-10 * time.Second); !m.Timestamp.Equal(want) {
					t.Errorf("timestamp %v, want %v", m.Timestamp, want)
				}
			}},
		{name: "no timestamp means received", kind: "track", body: `{"anonymousId":"a","event":"x"}`,
			check: func(t *testing.T, m Message) {
				if !m.Timestamp.Equal(received) {
					t.Errorf("timestamp %v, want %v", m.Timestamp, received)
				}
				if m.MessageID == "" {
					t.Error("no messageId derived")
				}
			}},
		{name: "identify normalises email", kind: "identify", body: `{"userId":"u","traits":{"email":"  Ann@Example.COM ","name":"Ann"}}`,
			check: func(t *testing.T, m Message) {
				if m.Email != "ann@example.com" {
					t.Errorf("email %q", m.Email)
				}
				var tr map[string]any
				_ = json.Unmarshal(m.Traits, &tr)
				if tr["email"] != "ann@example.com" || tr["name"] != "Ann" {
					t.Errorf("traits %s", m.Traits)
				}
			}},
		{name: "page becomes page_viewed", kind: "page", body: `{"anonymousId":"a","name":"Pricing","properties":{"url":"https://x/p"}}`,
			check: func(t *testing.T, m Message) {
				var p map[string]any
				_ = json.Unmarshal(m.Properties, &p)
				if m.Name != "page_viewed" || p["name"] != "Pricing" || p["url"] != "https://x/p" {
					t.Errorf("got %s %s", m.Name, m.Properties)
				}
			}},
		{name: "alias joins previousId", kind: "alias", body: `{"userId":"u","previousId":"anon-1"}`,
			check: func(t *testing.T, m Message) {
				if m.AnonymousID != "anon-1" || m.UserID != "u" {
					t.Errorf("got %+v", m)
				}
			}},
		{name: "NUL escape re-encoded", kind: "track", body: `{"userId":"u","event":"x","properties":{"s":"a\u0000b"}}`,
			check: func(t *testing.T, m Message) {
				var p map[string]string
				if err := json.Unmarshal(m.Properties, &p); err != nil || p["s"] != "a\ufffdb" || bytes.Contains(m.Properties, []byte(`\u0000`)) {
					t.Errorf("properties %s (%v)", m.Properties, err)
				}
			}},
		{name: "neither id", kind: "track", body: `{"event":"x"}`, wantField: "userId"},
		{name: "track without event", kind: "track", body: `{"userId":"u"}`, wantField: "event"},
		{name: "batch entry without type", body: `{"userId":"u","event":"x"}`, wantField: "type"},
		{name: "unknown type", body: `{"type":"trak","userId":"u"}`, wantField: "type"},
		{name: "bad timestamp", kind: "track", body: `{"userId":"u","event":"x","timestamp":"yesterday"}`, wantField: "timestamp"},
		{name: "properties not an object", kind: "track", body: `{"userId":"u","event":"x","properties":[1]}`, wantField: "properties"},
		{name: "bad email", kind: "identify", body: `{"userId":"u","traits":{"email":"not-an-email"}}`, wantField: "traits.email"},
		{name: "email with header injection", kind: "identify", body: `{"userId":"u","traits":{"email":"a@b.com\r\nBcc: c@d.com"}}`, wantField: "traits.email"},
		{name: "userId object", kind: "track", body: `{"userId":{"a":1},"event":"x"}`, wantField: "userId"},
		{name: "malformed JSON", kind: "track", body: `{"userId":`, wantField: ""},
		{name: "invalid UTF-8", kind: "track", body: "{\"userId\":\"\xff\",\"event\":\"x\"}", wantField: ""},
		{name: "group without groupId", kind: "group", body: `{"userId":"u"}`, wantField: "groupId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Parse([]byte(tt.body), tt.kind, 3, received, time.Time{})
			if tt.check == nil {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("err = %v, want a FieldError on %q", err, tt.wantField)
				}
				if fe.Field != tt.wantField || fe.Index != 3 || fe.Msg == "" {
					t.Fatalf("error %+v, want field %q at index 3", fe, tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, m)
		})
	}
}

func TestParseRejectsOversizedEntry(t *testing.T) {
	t.Parallel()
	big := `{"userId":"u","event":"x","properties":{"p":"` + string(make([]byte, MaxEventBytes)) + `"}}`
	_, err := Parse([]byte(big), "track", 0, time.Now(), time.Time{})
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want FieldError", err)
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Ann@Example.com":  "ann@example.com",
		" bo@x.io ":        "bo@x.io",
		"a.b+tag@sub.x.co": "a.b+tag@sub.x.co",
		"Ann <a@b.com>":    "",
		"a@b":              "",
		"@b.com":           "",
		"a@b.com, c@d.com": "",
	} {
		got, err := NormalizeEmail(in)
		if want == "" {
			if err == nil {
				t.Errorf("NormalizeEmail(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
