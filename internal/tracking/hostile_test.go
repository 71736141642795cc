package tracking

import (
	"errors"
	"testing"
	"time"
)

// Issue 23, item 7: tokens were decoded with lenient base64, so six other
// last characters of a click token were accepted. Every change of any one
// character of a token is refused.
func TestEveryChangedCharacterIsRefused(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	now := time.Unix(1_700_000_000, 0)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, tc := range []Token{
		{Kind: Click, ContactID: 42, SendID: 7, URL: "https://example.com/a", Expires: now.Add(time.Hour)},
		{Kind: Unsubscribe, ContactID: 42, SendID: 7, Expires: now.Add(time.Hour)},
		{Kind: Open, ContactID: 1, SendID: 2},
	} {
		tok := s.Sign(tc)
		if _, err := s.Verify(tc.Kind, tok, now); err != nil {
			t.Fatalf("%s: the token itself: %v", tc.Kind, err)
		}
		accepted := 0
		for i := range tok {
			for _, c := range alphabet {
				if byte(c) == tok[i] {
					continue
				}
				changed := tok[:i] + string(c) + tok[i+1:]
				if _, err := s.Verify(tc.Kind, changed, now); !errors.Is(err, ErrInvalid) {
					accepted++
					if accepted <= 3 {
						t.Errorf("%s token with character %d changed to %q: %v, want ErrInvalid", tc.Kind, i, c, err)
					}
				}
			}
		}
		if accepted > 0 {
			t.Errorf("%s: %d changed tokens accepted", tc.Kind, accepted)
		}
	}
}
