package smtptest

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
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("parsing Content-Type %q: %w", ct, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		if params["boundary"] == "" {
			return nil, fmt.Errorf("%s without boundary", mt)
		}
		mr := multipart.NewReader(body, params["boundary"])
		var out []Part
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading %s part: %w", mt, err)
			}
			sub, err := parts(p.Header, p)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s with no parts", mt)
		}
		return out, nil
	}
	var r io.Reader = body
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, stripNewlines{body})
	case "", "7bit", "8bit", "binary":
	default:
		return nil, fmt.Errorf("unknown Content-Transfer-Encoding %q", cte)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decoding %s body: %w", mt, err)
	}
	return []Part{{ContentType: mt, Params: params, Header: h, Body: b}}, nil
}

type stripNewlines struct{ r io.Reader }

func (s stripNewlines) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	return j, err
}
