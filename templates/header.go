package templates

import (
	"strings"
	"unicode/utf8"
)

// SanitizeHeader makes s safe to use as the value of a mail header such as
// Subject: line breaks (CR, LF, U+0085, U+2028, U+2029) and tabs become a
// single space, every other control character (C0, DEL, C1) and invalid
// UTF-8 is removed, runs of spaces collapse and the result is trimmed. A
// value built from contact data can therefore never start a new header.
func SanitizeHeader(s string) string {
	if cleanHeader(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	sanitizeHeaderTo(&b, s)
	return b.String()
}

// cleanHeader reports whether s needs no change: printable ASCII with no
// leading, trailing or doubled spaces.
func cleanHeader[T string | []byte](s T) bool {
	prevSpace := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return false
		}
		if c == ' ' {
			if prevSpace {
				return false
			}
			prevSpace = true
		} else {
			prevSpace = false
		}
	}
	return !prevSpace || len(s) == 0
}

func sanitizeHeaderTo(b *strings.Builder, s string) {
	pendingSpace, wrote := false, false
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f':
				pendingSpace = true
				continue
			case c < 0x20 || c == 0x7f:
				continue
			}
			if pendingSpace && wrote {
				b.WriteByte(' ')
			}
			pendingSpace, wrote = false, true
			b.WriteByte(c)
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			continue
		case r == 0x85 || r == 0x2028 || r == 0x2029:
			pendingSpace = true
			continue
		case r >= 0x80 && r <= 0x9f:
			continue
		}
		if pendingSpace && wrote {
			b.WriteByte(' ')
		}
		pendingSpace, wrote = false, true
		b.WriteRune(r)
	}
}

// FirstName derives a contact's first name from its traits: first_name,
// then firstName, then the first word of name. It is empty when none of
// them is a non-blank string.
func FirstName(traits map[string]any) string {
	for _, k := range [...]string{"first_name", "firstName"} {
		if s, ok := traits[k].(string); ok {
			if s = strings.TrimSpace(s); s != "" {
				return s
			}
		}
	}
	if s, ok := traits["name"].(string); ok {
		s = strings.TrimSpace(s)
		if i := strings.IndexFunc(s, isSpaceRune); i >= 0 {
			s = s[:i]
		}
		return s
	}
	return ""
}

func isSpaceRune(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '\v', '\f', 0x85, 0xa0, 0x2028, 0x2029, 0x3000:
		return true
	}
	return false
}
