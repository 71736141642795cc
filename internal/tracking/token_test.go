package tracking

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	t0     = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	secret = "0123456789abcdef-test-secret"
)

func newSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSignerRefusesShortSecret(t *testing.T) {
	t.Parallel()
	if _, err := NewSigner("short"); err == nil {
		t.Fatal("a 5-character secret was accepted")
	}
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	for _, tc := range []Token{
		{Kind: Unsubscribe, ContactID: 42, SendID: 7, Expires: t0.Add(365 * 24 * time.Hour)},
		{Kind: Preferences, ContactID: 1, SendID: 1 << 40, Expires: t0.Add(time.Hour)},
		{Kind: Open, ContactID: 1<<63 - 1, SendID: 0, Expires: t0.Add(time.Second)},
		{Kind: Click, ContactID: 9, SendID: 10, URL: "https://shop.example.com/p?a=1&b=%20x#frag", Expires: t0.Add(180 * 24 * time.Hour)},
		{Kind: Unsubscribe, ContactID: 5, SendID: 6}, // never expires
	} {
		t.Run(tc.Kind.String(), func(t *testing.T) {
			tok := s.Sign(tc)
			if strings.ContainsAny(tok, "+/=") {
				t.Errorf("token %q is not URL-safe base64 without padding", tok)
			}
			got, err := s.Verify(tc.Kind, tok, t0)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != tc {
				t.Errorf("Verify = %+v, want %+v", got, tc)
			}
		})
	}
}

func TestTokenIsCompact(t *testing.T) {
	t.Parallel()
	tok := newSigner(t).Sign(Token{Kind: Unsubscribe, ContactID: 123456, SendID: 654321, Expires: t0.Add(365 * 24 * time.Hour)})
	// 1 + 3 + 3 + 5 bytes of payload and a 16-byte MAC.
	if len(tok) != 38 {
		t.Errorf("token %q has %d characters, want 38", tok, len(tok))
	}
}

func TestTokenTamperedRefused(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	tok := s.Sign(Token{Kind: Click, ContactID: 42, SendID: 7, URL: "https://example.com/a", Expires: t0.Add(time.Hour)})
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		if _, err := s.Verify(Click, base64.RawURLEncoding.EncodeToString(b), t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("byte %d flipped: err = %v, want ErrInvalid", i, err)
		}
	}
	for _, bad := range []string{"", "x", tok[:len(tok)-1], tok + "A", "!!" + tok[2:], tok[:10]} {
		if _, err := s.Verify(Click, bad, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("Verify(%q): err = %v, want ErrInvalid", bad, err)
		}
	}
	other, _ := NewSigner("another-secret-of-enough-length")
	if _, err := other.Verify(Click, tok, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("a token verified under another secret: err = %v", err)
	}
}

// replaceMACed builds a token with payload p and the MAC of another token.
func replaceMACed(t *testing.T, tok string, p []byte) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(append(p, raw[len(raw)-MACSize:]...))
}

func payloadOf(t *testing.T, tok string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	return raw[:len(raw)-MACSize]
}

func TestTokenReplayOnAnotherContactRefused(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	mine := s.Sign(Token{Kind: Unsubscribe, ContactID: 42, SendID: 7, Expires: t0.Add(time.Hour)})
	// The same send and expiry for contact 43, carrying contact 42's MAC.
	theirs := payloadOf(t, s.Sign(Token{Kind: Unsubscribe, ContactID: 43, SendID: 7, Expires: t0.Add(time.Hour)}))
	if _, err := s.Verify(Unsubscribe, replaceMACed(t, mine, theirs), t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}

func TestTokenSwappedURLRefused(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	tok := s.Sign(Token{Kind: Click, ContactID: 42, SendID: 7, URL: "https://shop.example.com/", Expires: t0.Add(time.Hour)})
	p := payloadOf(t, tok)
	swapped := append(p[:len(p)-len("https://shop.example.com/")], "https://evil.example.net/"...)
	if _, err := s.Verify(Click, replaceMACed(t, tok, swapped), t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}

func TestTokenExpiredRefused(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	want := Token{Kind: Open, ContactID: 42, SendID: 7, Expires: t0}
	tok := s.Sign(want)
	if _, err := s.Verify(Open, tok, t0.Add(-time.Second)); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	got, err := s.Verify(Open, tok, t0)
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: err = %v, want ErrExpired", err)
	}
	if got != want {
		t.Errorf("an expired token comes back as %+v, want %+v", got, want)
	}
}

func TestTokenKindMismatchRefused(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	kinds := []Kind{Unsubscribe, Preferences, Open, Click}
	for _, signed := range kinds {
		tok := s.Sign(Token{Kind: signed, ContactID: 1, SendID: 2, URL: "https://example.com/", Expires: t0.Add(time.Hour)})
		for _, used := range kinds {
			_, err := s.Verify(used, tok, t0)
			if used == signed && err != nil {
				t.Errorf("%s as %s: %v", signed, used, err)
			}
			if used != signed && !errors.Is(err, ErrKind) {
				t.Errorf("%s as %s: err = %v, want ErrKind", signed, used, err)
			}
		}
	}
}

func TestClickTokenOnlyForHTTPURLs(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	for _, u := range []string{"javascript:alert(1)", "//evil.example.net/", "/relative", "mailto:a@example.com", "https://"} {
		tok := s.Sign(Token{Kind: Click, ContactID: 1, SendID: 2, URL: u})
		if _, err := s.Verify(Click, tok, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("click token to %q: err = %v, want ErrInvalid", u, err)
		}
	}
}

// Links sent before the secret changed keep working; new ones use the
// new secret, which the old signer refuses.
func TestOlderSecretStillVerifies(t *testing.T) {
	t.Parallel()
	old, err := NewSigner("the-secret-we-started-with")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := NewSigner("the-secret-configured-later", "the-secret-we-started-with")
	if err != nil {
		t.Fatal(err)
	}
	tok := Token{Kind: Unsubscribe, ContactID: 3, SendID: 4, Expires: t0.Add(time.Hour)}
	if got, err := cur.Verify(Unsubscribe, old.Sign(tok), t0); err != nil || got != tok {
		t.Errorf("a link signed with the older secret: %+v, %v", got, err)
	}
	if _, err := old.Verify(Unsubscribe, cur.Sign(tok), t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("the new secret's link verified by the old signer: %v", err)
	}
	if cur.Sign(tok) == old.Sign(tok) {
		t.Error("new links are signed with the older secret")
	}
	if _, err := NewSigner("the-secret-configured-later", "short"); err == nil {
		t.Error("a short older secret is accepted")
	}
}
