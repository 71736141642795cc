package capture

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"golang.org/x/text/encoding/htmlindex"

	"github.com/waymark/waymark/internal/mimeparts"
)

// Mail is a received message, parsed.
type Mail struct {
	ID         int64 // 1, 2, … in the order received
	ReceivedAt time.Time
	// The SMTP envelope.
	EnvelopeFrom string
	EnvelopeTo   []string
	// The header, decoded (RFC 2047).
	From, To, Subject, MessageID string
	Date                         time.Time // zero when absent or unparsable
	Header                       mail.Header
	// The bodies, transfer encoding undone and converted to UTF-8: the
	// first text/plain and text/html parts.
	Text, HTML string
	// Size of the message as received, in bytes.
	Size int
	// ParseError says why the message could not be fully parsed (it is
	// kept regardless); empty when it parsed.
	ParseError string
	// Raw is the message as received (Get only; List leaves it out).
	Raw []byte
}

// Parse parses a message as received. It never fails: what cannot be
// parsed is reported in ParseError and left empty.
func Parse(raw []byte) *Mail {
	m := &Mail{Raw: raw, Size: len(raw)}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		m.ParseError = "header: " + err.Error()
		return m
	}
	m.Header = msg.Header
	dec := wordDecoder()
	h := func(name string) string {
		v := msg.Header.Get(name)
		if d, err := dec.DecodeHeader(v); err == nil {
			return d
		}
		return v
	}
	m.From, m.To, m.Subject, m.MessageID = h("From"), h("To"), h("Subject"), strings.TrimSpace(msg.Header.Get("Message-ID"))
	if d, err := msg.Header.Date(); err == nil {
		m.Date = d
	}
	if err := mimeparts.Walk(textproto.MIMEHeader(msg.Header), msg.Body, m.keep); err != nil {
		m.ParseError = err.Error()
	}
	return m
}

// keep keeps the first text/plain and text/html leaves that are not
// attachments; attachments and images are not shown.
func (m *Mail) keep(l mimeparts.Leaf) error {
	if l.Media != "text/plain" && l.Media != "text/html" {
		return nil
	}
	if cd := strings.ToLower(l.Header.Get("Content-Disposition")); cd == "attachment" || strings.HasPrefix(cd, "attachment;") {
		return nil
	}
	if (l.Media == "text/plain" && m.Text != "") || (l.Media == "text/html" && m.HTML != "") {
		return nil
	}
	b, err := mimeparts.Decode(l)
	if err != nil {
		return err
	}
	s, err := toUTF8(b, l.Params["charset"])
	if err != nil {
		return fmt.Errorf("%s part: %v", l.Media, err)
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	if l.Media == "text/plain" {
		m.Text = s
	} else {
		m.HTML = s
	}
	return nil
}

func toUTF8(b []byte, charset string) (string, error) {
	cs := strings.ToLower(strings.TrimSpace(charset))
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return string(b), nil
	}
	enc, err := htmlindex.Get(cs)
	if err != nil {
		return "", fmt.Errorf("unknown charset %q", charset)
	}
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return "", fmt.Errorf("charset %q: %v", charset, err)
	}
	return string(out), nil
}

func wordDecoder() *mime.WordDecoder {
	return &mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
		b, err := io.ReadAll(input)
		if err != nil {
			return nil, err
		}
		s, err := toUTF8(b, charset)
		if err != nil {
			return nil, err
		}
		return strings.NewReader(s), nil
	}}
}
