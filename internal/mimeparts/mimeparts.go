// Package mimeparts walks the body parts of a MIME message: the one reader
// of received mail that the capture server (lenient, for people) and the
// test SMTP server (strict, for assertions) share.
package mimeparts

import (
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
)

// Leaf is one leaf body part as found; Body still has its transfer
// encoding (Decode undoes it).
type Leaf struct {
	Media  string            // media type, lower case, e.g. "text/plain"
	Params map[string]string // Content-Type parameters, e.g. charset
	Header textproto.MIMEHeader
	Body   io.Reader
}

// Limits bound a walk: parts read in all, and multipart nesting.
const (
	MaxParts = 100
	MaxDepth = 10
)

// Walk calls visit for each leaf part of a body with header h, in order,
// descending into multipart containers (a single-part body is one leaf).
// A part without Content-Type is text/plain in US-ASCII. It fails on
// malformed MIME: a bad Content-Type, a multipart without boundary or
// without parts, more than MaxParts parts or nesting deeper than MaxDepth.
func Walk(h textproto.MIMEHeader, body io.Reader, visit func(Leaf) error) error {
	parts := 0
	return walk(h, body, 0, &parts, visit)
}

func walk(h textproto.MIMEHeader, body io.Reader, depth int, parts *int, visit func(Leaf) error) error {
	*parts++
	if *parts > MaxParts || depth > MaxDepth {
		return fmt.Errorf("more than %d MIME parts, or nested deeper than %d", MaxParts, MaxDepth)
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	media, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", ct, err)
	}
	if !strings.HasPrefix(media, "multipart/") {
		return visit(Leaf{Media: media, Params: params, Header: h, Body: body})
	}
	if params["boundary"] == "" {
		return fmt.Errorf("%s without boundary", media)
	}
	mr := multipart.NewReader(body, params["boundary"])
	for n := 0; ; n++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			if n == 0 {
				return fmt.Errorf("%s with no parts", media)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", media, err)
		}
		if err := walk(p.Header, p, depth+1, parts, visit); err != nil {
			return err
		}
	}
}

// Decode reads a leaf's body with its Content-Transfer-Encoding undone.
func Decode(l Leaf) ([]byte, error) {
	var r io.Reader
	switch enc := strings.ToLower(strings.TrimSpace(l.Header.Get("Content-Transfer-Encoding"))); enc {
	case "quoted-printable":
		r = quotedprintable.NewReader(l.Body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &newlineSkipper{r: l.Body})
	case "", "7bit", "8bit", "binary":
		r = l.Body
	default:
		return nil, fmt.Errorf("%s part: unknown Content-Transfer-Encoding %q", l.Media, enc)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s part: %w", l.Media, err)
	}
	return b, nil
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
