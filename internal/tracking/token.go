// Package tracking signs the links Waymark puts in marketing emails — the
// RFC 8058 one-click unsubscribe, the preferences page, the open pixel and
// click redirects — adds them to messages (Decorator), and serves them
// (NewHandler), turning them into unsubscriptions and engagement events.
//
// A link's token is its capability: it names the contact and the send
// inside an HMAC, so it cannot be forged, replayed on another contact or
// used for another kind of link, and it needs no cookie or login.
package tracking

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"sync"
	"time"
)

// Kind is what a token opens. It is inside the MAC: a token of one kind is
// refused for another.
type Kind byte

const (
	Unsubscribe Kind = iota + 1 // /u/TOKEN and the mailto: of List-Unsubscribe
	Preferences                 // /preferences/TOKEN
	Open                        // /o/TOKEN, the open pixel
	Click                       // /c/TOKEN, a click redirect; the token carries the URL
)

func (k Kind) String() string {
	switch k {
	case Unsubscribe:
		return "unsubscribe"
	case Preferences:
		return "preferences"
	case Open:
		return "open"
	case Click:
		return "click"
	}
	return fmt.Sprintf("Kind(%d)", byte(k))
}

// Token is what a signed link says.
type Token struct {
	Kind      Kind
	ContactID int64
	SendID    int64
	// URL is the target of a Click token (absolute http or https); empty
	// for the other kinds.
	URL string
	// Expires is when the link stops working, to the second. The zero
	// time never expires.
	Expires time.Time
}

// Token errors. Verify wraps one of them.
var (
	// ErrInvalid: not a token, or its MAC does not match (tampered,
	// another secret, another contact's, truncated).
	ErrInvalid = errors.New("invalid link")
	// ErrKind: an authentic token of another kind.
	ErrKind = errors.New("link of another kind")
	// ErrExpired: an authentic token past its expiry.
	ErrExpired = errors.New("expired link")
)

// MACSize is the length of the truncated HMAC-SHA256 in a token: 128 bits.
const MACSize = 16

// MinSecretLen is the shortest secret NewSigner accepts.
const MinSecretLen = 16

// Signer signs and verifies tokens with a key derived from WAYMARK_SECRET.
// It is safe for concurrent use.
type Signer struct {
	key  []byte
	macs sync.Pool // of keyed HMAC-SHA256 states: hmac.New costs more than a short MAC
	// older verify links signed with earlier secrets.
	older []*Signer
}

// NewSigner returns a signer keyed by secret, which must be at least
// MinSecretLen bytes (a random string; changing it invalidates every link
// already sent). Links signed with an older secret are accepted too (they
// were sent, and must keep working); new ones are signed with secret.
func NewSigner(secret string, older ...string) (*Signer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("the secret must be at least %d characters, it has %d", MinSecretLen, len(secret))
	}
	// A key for this use only, so the same secret can key other things.
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("waymark tracking links v1"))
	s := &Signer{key: m.Sum(nil)}
	s.macs.New = func() any { return hmac.New(sha256.New, s.key) }
	for _, o := range older {
		if o == secret {
			continue
		}
		prev, err := NewSigner(o)
		if err != nil {
			return nil, fmt.Errorf("an older secret: %w", err)
		}
		s.older = append(s.older, prev)
	}
	return s, nil
}

// authentic reports whether sum is payload's MAC under the secret or an
// older one.
func (s *Signer) authentic(payload, sum []byte) bool {
	if hmac.Equal(sum, s.mac(payload)) {
		return true
	}
	for _, o := range s.older {
		if hmac.Equal(sum, o.mac(payload)) {
			return true
		}
	}
	return false
}

// The payload, before the MAC:
//
//	kind (1 byte) | contact id (uvarint) | send id (uvarint) |
//	expiry, Unix seconds (uvarint; 0: never) | URL (the rest; clicks only)
//
// and the token is the URL-safe base64 (no padding) of payload || MAC,
// the MAC being the first MACSize bytes of HMAC-SHA256(key, payload).

// Sign returns t's token. Negative ids are a programming error and panic.
func (s *Signer) Sign(t Token) string {
	if t.ContactID < 0 || t.SendID < 0 {
		panic("tracking: negative id in a token")
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(t.URL)+MACSize)
	b = append(b, byte(t.Kind))
	b = binary.AppendUvarint(b, uint64(t.ContactID))
	b = binary.AppendUvarint(b, uint64(t.SendID))
	var exp uint64
	if !t.Expires.IsZero() && t.Expires.Unix() > 0 {
		exp = uint64(t.Expires.Unix())
	}
	b = binary.AppendUvarint(b, exp)
	if t.Kind == Click {
		b = append(b, t.URL...)
	}
	b = append(b, s.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Signer) mac(payload []byte) []byte {
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(payload)
	var sum [sha256.Size]byte
	out := m.Sum(sum[:0])[:MACSize]
	s.macs.Put(m)
	return out
}

// Verify checks tok as a token of kind k at now. The MAC is compared in
// constant time. When the token is authentic and of kind k but past its
// expiry, Verify returns it with an error wrapping ErrExpired, so a caller
// may still act on what it says (a click on an old email still redirects,
// without being recorded); any other error returns the zero Token.
func (s *Signer) Verify(k Kind, tok string, now time.Time) (Token, error) {
	// Strict: a last character whose unused bits are set (six other
	// characters decoding to the same bytes) is refused, so a changed
	// character is always refused.
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(b) < 4+MACSize {
		return Token{}, ErrInvalid
	}
	payload, sum := b[:len(b)-MACSize], b[len(b)-MACSize:]
	if !s.authentic(payload, sum) {
		return Token{}, ErrInvalid
	}
	t := Token{Kind: Kind(payload[0])}
	if t.Kind != k {
		return Token{}, fmt.Errorf("%w: a %s link used as a %s link", ErrKind, t.Kind, k)
	}
	rest := payload[1:]
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(rest)
		if n <= 0 || (i < 2 && v > 1<<63-1) {
			return Token{}, ErrInvalid
		}
		vals[i], rest = v, rest[n:]
	}
	t.ContactID, t.SendID = int64(vals[0]), int64(vals[1])
	if vals[2] != 0 {
		if vals[2] > 1<<62 {
			return Token{}, ErrInvalid
		}
		t.Expires = time.Unix(int64(vals[2]), 0).UTC()
	}
	switch {
	case k == Click:
		t.URL = string(rest)
		if !linkable(t.URL) {
			return Token{}, ErrInvalid
		}
	case len(rest) != 0:
		return Token{}, ErrInvalid
	}
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return t, fmt.Errorf("%w: it expired on %s", ErrExpired, t.Expires.Format("2 January 2006"))
	}
	return t, nil
}

// FormToken is the value the preferences form carries for the link token
// tok: an HMAC of it under a label of its own, so it is bound to this link
// and cannot be computed without the secret.
func (s *Signer) FormToken(tok string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac([]byte("preferences form\x00" + tok)))
}

// CheckFormToken reports, in constant time, whether form is FormToken(tok).
func (s *Signer) CheckFormToken(tok, form string) bool {
	return hmac.Equal([]byte(s.FormToken(tok)), []byte(form))
}

// linkable reports whether u is an absolute http(s) URL with a host: the
// only targets a click token may carry.
func linkable(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	return (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}
