package capture

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"golang.org/x/text/encoding/htmlindex"
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

// maxParts bounds the MIME parts read from one message.
const maxParts = 100

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
	parts := 0
	if err := m.walk(textproto.MIMEHeader(msg.Header), msg.Body, 0, &parts); err != nil {
		m.ParseError = err.Error()
	}
	return m
}

// walk reads a body with its header, descending into multiparts, and keeps
// the first text/plain and text/html leaves.
func (m *Mail) walk(h textproto.MIMEHeader, body io.Reader, depth int, parts *int) error {
	*parts++
	if *parts > maxParts || depth > 10 {
		return fmt.Errorf("more than %d MIME parts, or nested deeper than 10", maxParts)
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	media, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %v", ct, err)
	}
	if strings.HasPrefix(media, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: %v", media, err)
			}
			if err := m.walk(p.Header, p, depth+1, parts); err != nil {
				return err
			}
		}
	}
	if media != "text/plain" && media != "text/html" {
		return nil // attachments and images are not shown
	}
	if strings.EqualFold(h.Get("Content-Disposition"), "attachment") || strings.HasPrefix(strings.ToLower(h.Get("Content-Disposition")), "attachment;") {
		return nil
	}
	if (media == "text/plain" && m.Text != "") || (media == "text/html" && m.HTML != "") {
		return nil
	}
	var r io.Reader = body
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); enc {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &newlineSkipper{r: body})
	case "", "7bit", "8bit", "binary":
	default:
		return fmt.Errorf("%s part: unknown Content-Transfer-Encoding %q", media, enc)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("%s part: %v", media, err)
	}
	s, err := toUTF8(b, params["charset"])
	if err != nil {
		return fmt.Errorf("%s part: %v", media, err)
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	if media == "text/plain" {
		m.Text = s
	} else {
		m.HTML = s
	}
	return nil
}

// newlineSkipper drops CR and LF, which base64 bodies wrap with.
type newlineSkipper struct{ r io.Reader }

func (n *newlineSkipper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
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
