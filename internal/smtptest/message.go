package smtptest

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"

	"github.com/waymark/waymark/internal/mimeparts"
)

// Message is one message the server received.
type Message struct {
	From string   // envelope sender (MAIL FROM)
	To   []string // envelope recipients (RCPT TO)
	Data []byte   // the message as received, RFC 5322, CRLF line ends
}

// Parse parses Data with net/mail.
func (m Message) Parse() (*mail.Message, error) {
	return mail.ReadMessage(bytes.NewReader(m.Data))
}

// Header returns every value of the header field name in the message's
// header, as written (unfolded, not decoded), or nil when the message does
// not parse.
func (m Message) Header(name string) []string {
	msg, err := m.Parse()
	if err != nil {
		return nil
	}
	return msg.Header[textproto.CanonicalMIMEHeaderKey(name)]
}

// DecodedHeader returns the first value of the header field name with RFC
// 2047 encoded-words decoded.
func (m Message) DecodedHeader(name string) (string, error) {
	vals := m.Header(name)
	if len(vals) == 0 {
		return "", fmt.Errorf("no %s header", name)
	}
	return new(mime.WordDecoder).DecodeHeader(vals[0])
}

// HeaderNames returns the field names of the message's header in order,
// as written.
func (m Message) HeaderNames() []string {
	head, _, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	var names []string
	for _, line := range strings.Split(string(head), "\r\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if name, _, ok := strings.Cut(line, ":"); ok {
			names = append(names, name)
		}
	}
	return names
}

// Part is one leaf body part of a message, with its transfer encoding undone.
type Part struct {
	ContentType string            // media type, lower case, e.g. "text/plain"
	Params      map[string]string // Content-Type parameters, e.g. charset
	Header      textproto.MIMEHeader
	Body        []byte
}

// Parts returns the leaf parts of the message in order, descending into
// multipart containers; a single-part message yields one Part. It fails on
// anything that is not valid MIME.
func (m Message) Parts() ([]Part, error) {
	msg, err := m.Parse()
	if err != nil {
		return nil, fmt.Errorf("parsing message: %w", err)
	}
	return parts(textproto.MIMEHeader(msg.Header), msg.Body)
}

func parts(h textproto.MIMEHeader, body io.Reader) ([]Part, error) {
	var out []Part
	err := mimeparts.Walk(h, body, func(l mimeparts.Leaf) error {
		b, err := mimeparts.Decode(l)
		if err != nil {
			return err
		}
		out = append(out, Part{ContentType: l.Media, Params: l.Params, Header: l.Header, Body: b})
		return nil
	})
	return out, err
}
