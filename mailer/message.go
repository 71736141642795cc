package mailer

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"
)

// reservedHeaders are the fields a message sets itself; Message.Headers may
// not add a second one.
var reservedHeaders = map[string]bool{
	"from": true, "sender": true, "to": true, "cc": true, "bcc": true,
	"subject": true, "date": true, "message-id": true, "mime-version": true,
	"content-type": true, "content-transfer-encoding": true, "content-disposition": true,
	"dkim-signature": true, "return-path": true, "received": true,
	"in-reply-to": true, "references": true,
}

// build turns m's header fields into a go-mail message (without a body:
// appendBody writes it), through go-mail's checked setters only: addresses are parsed, other values are RFC 2047-encoded when they
// hold anything but printable ASCII, so nothing in a value can start a new
// header field or add a recipient.
func build(m *Message, now time.Time) (*gomail.Msg, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	if !validID(m.ID) {
		return nil, fmt.Errorf("%w: id %q is not a dot-atom", ErrInvalidMessage, m.ID)
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("%w: From %q: %v", ErrInvalidMessage, m.From, err)
	}
	at := strings.LastIndexByte(from.Address, '@')
	if at < 0 || at == len(from.Address)-1 {
		return nil, fmt.Errorf("%w: From %q has no domain", ErrInvalidMessage, m.From)
	}
	if m.Text == "" {
		return nil, fmt.Errorf("%w: no text part", ErrInvalidMessage)
	}

	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(from)
	if m.ReturnPath != "" {
		if HasInvisible(m.ReturnPath) || msg.EnvelopeFrom(m.ReturnPath) != nil {
			return nil, fmt.Errorf("%w: return path %q: not an address", ErrInvalidMessage, m.ReturnPath)
		}
	}
	if HasInvisible(m.To) {
		return nil, fmt.Errorf("%w: To %q holds a control, format or separator character", ErrInvalidMessage, m.To)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("%w: To: %v", ErrInvalidMessage, err)
	}
	if field, ok := forceEncoded(oneLine(m.Subject)); ok {
		msg.SetGenHeaderPreformatted(gomail.HeaderSubject, field)
	} else {
		msg.Subject(oneLine(m.Subject))
	}
	msg.SetMessageIDWithValue(m.ID + "@" + from.Address[at+1:])
	date := m.Date
	if date.IsZero() {
		date = now
	}
	msg.SetDateWithValue(date)

	var names []string
	values := map[string][]string{}
	canon := map[string]string{}
	for _, h := range m.Headers {
		name, value := h[0], h[1]
		if !validFieldName(name) {
			return nil, fmt.Errorf("%w: header name %q", ErrInvalidMessage, name)
		}
		key := strings.ToLower(name)
		if reservedHeaders[key] {
			return nil, fmt.Errorf("%w: header %s is set by the mailer", ErrInvalidMessage, name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("%w: header %s: line break in value", ErrInvalidMessage, name)
		}
		if _, ok := canon[key]; !ok {
			canon[key] = name
			names = append(names, key)
		}
		values[key] = append(values[key], value)
	}
	for _, key := range names {
		if key == "reply-to" {
			if err := msg.ReplyTo(strings.Join(values[key], ", ")); err != nil {
				return nil, fmt.Errorf("%w: Reply-To: %v", ErrInvalidMessage, err)
			}
			continue
		}
		msg.SetGenHeader(gomail.Header(canon[key]), values[key]...)
	}

	// The body is appended to what go-mail writes (appendBody).
	return msg, nil
}

// HasInvisible reports whether s holds a character of the Unicode
// categories Cc, Cf, Zl or Zp: controls (U+0085 among them), format
// characters (U+200B, U+202E that reverses what follows) and the line and
// paragraph separators U+2028 and U+2029. None belongs in an address, and
// each can break a line or hide what an address says.
func HasInvisible(s string) bool {
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			return true
		}
	}
	return false
}

// validID reports whether id is an RFC 5322 dot-atom-text, so that
// <id@domain> is a valid msg-id.
func validID(id string) bool {
	if id == "" || len(id) > 200 || id[0] == '.' || id[len(id)-1] == '.' || strings.Contains(id, "..") {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validFieldName reports whether name is an RFC 5322 field-name: printable
// ASCII without ':' (and without space).
func validFieldName(name string) bool {
	if name == "" || len(name) > 76 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// oneLine replaces every run of line breaks with one space.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), " ")
}

// forceEncoded returns s as RFC 2047 Q encoded-words, folded, when s holds
// "=?": plain text that looks like an encoded-word would be decoded by the
// recipient's client, so a subject built from contact data could show a
// line break or another field that Waymark never wrote. Encoded as a
// whole, it reads back exactly as written. ok is false when s needs no
// such care.
func forceEncoded(s string) (field string, ok bool) {
	if !strings.Contains(s, "=?") {
		return "", false
	}
	const (
		head = "=?UTF-8?q?"
		tail = "?="
		max  = 75 - len(head) - len(tail) // encoded text per word
	)
	var (
		words []string
		word  strings.Builder
	)
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		var enc strings.Builder
		var buf [utf8.UTFMax]byte
		for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
			switch {
			case c == ' ':
				enc.WriteByte('_')
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '!', c == '*', c == '+', c == '-', c == '/':
				enc.WriteByte(c)
			default:
				fmt.Fprintf(&enc, "=%02X", c)
			}
		}
		if word.Len()+enc.Len() > max {
			words = append(words, head+word.String()+tail)
			word.Reset()
		}
		word.WriteString(enc.String())
	}
	words = append(words, head+word.String()+tail)
	return strings.Join(words, "\r\n "), true
}
