package mailer

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"strconv"
)

// The message's header fields are written by go-mail (build); its body is
// written here: go-mail encodes quoted-printable through the standard
// library's Writer, a byte at a time through an interface, and that was a
// fifth of the sender's CPU for a newsletter. The output is what go-mail
// wrote, but for the multipart boundary (see appendBody).

// appendBody appends the MIME fields of m's body, the blank line that ends
// the header and the body: the text part alone, or the text and the HTML
// parts as multipart/alternative, each quoted-printable encoded in UTF-8.
//
// The boundary starts with "=_", which cannot occur in quoted-printable
// content (a "=" there is followed by two hex digits or a line break), so
// no part can end the multipart early whatever it holds.
func appendBody(b []byte, m *Message) []byte {
	const qpHeader = "Content-Transfer-Encoding: quoted-printable\r\nContent-Type: "
	if m.HTML == "" {
		b = append(b, qpHeader+"text/plain; charset=UTF-8\r\n\r\n"...)
		return appendQP(b, m.Text)
	}
	var bd [2 + 32]byte
	boundary := append(bd[:0], "=_"...)
	boundary = strconv.AppendUint(boundary, rand.Uint64(), 36)
	boundary = strconv.AppendUint(boundary, rand.Uint64(), 36)
	b = append(b, "Content-Type: multipart/alternative;\r\n boundary=\""...)
	b = append(b, boundary...)
	b = append(b, "\"\r\n\r\n--"...)
	b = append(b, boundary...)
	b = append(b, "\r\n"+qpHeader+"text/plain; charset=UTF-8\r\n\r\n"...)
	b = appendQP(b, m.Text)
	b = append(b, "\r\n--"...)
	b = append(b, boundary...)
	b = append(b, "\r\n"+qpHeader+"text/html; charset=UTF-8\r\n\r\n"...)
	b = appendQP(b, m.HTML)
	b = append(b, "\r\n--"...)
	b = append(b, boundary...)
	return append(b, "--\r\n"...)
}

const upperhex = "0123456789ABCDEF"

// qpMaxLine is the longest encoded line, soft line break included
// (RFC 2045 §6.7 rule 5).
const qpMaxLine = 76

// qpLiteral reports whether c stands for itself in quoted-printable.
func qpLiteral(c byte) bool { return qpLiterals[c] }

// qpLiterals[c] says whether byte c stands for itself in quoted-printable:
// printable ASCII but '=', space and tab. appendQP asks for every byte of
// every body, and one load costs less than the comparisons.
var qpLiterals = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= '!' && c <= '~' && c != '=' || c == ' ' || c == '\t'
	}
	return t
}()

// appendQP appends s quoted-printable encoded, byte for byte as the
// standard library's quotedprintable.Writer (text mode) encodes it: line
// breaks (CRLF, LF or CR) become CRLF, whitespace before a line break or
// at the end is encoded, and lines are cut with soft line breaks at 76
// characters. TestQuotedPrintableAsStandardLibrary holds it to that.
func appendQP(b []byte, s string) []byte {
	var (
		n  int  // length of the current encoded line
		cr bool // the last line break was a CR: an LF right after it is part of it
	)
	for k := 0; k < len(s); {
		c := s[k]
		switch {
		case qpLiteral(c):
			// a run of literal bytes, cut at the line length
			j := k + 1
			for j < len(s) && qpLiteral(s[j]) {
				j++
			}
			for k < j {
				if n == qpMaxLine-1 {
					b = append(b, "=\r\n"...)
					n = 0
				}
				w := min(j-k, qpMaxLine-1-n)
				b = append(b, s[k:k+w]...)
				n += w
				k += w
			}
			cr = false
			continue
		case c == '\n' || c == '\r':
			if cr && c == '\n' {
				cr = false
				k++
				continue
			}
			if c == '\r' {
				cr = true
			}
			b, n = qpTrailingSpace(b, n)
			b = append(b, '\r', '\n')
			n = 0
		default:
			b, n = qpEncode(b, n, c)
		}
		k++
	}
	b, _ = qpTrailingSpace(b, n)
	return b
}

// qpEncode appends c as =XX on the current line (of n bytes), after a
// soft line break if it does not fit.
func qpEncode(b []byte, n int, c byte) ([]byte, int) {
	if qpMaxLine-1-n < 3 {
		b = append(b, "=\r\n"...)
		n = 0
	}
	return append(b, '=', upperhex[c>>4], upperhex[c&0x0f]), n + 3
}

// qpTrailingSpace encodes the last byte of the current line if it is a
// space or a tab (a line may not end in whitespace).
func qpTrailingSpace(b []byte, n int) ([]byte, int) {
	if n == 0 {
		return b, n
	}
	if c := b[len(b)-1]; c == ' ' || c == '\t' {
		return qpEncode(b[:len(b)-1], n-1, c)
	}
	return b, n
}

// crlfOnly reports whether every line break in p is a CRLF, so that the
// content can go out as it is, dot-stuffed, without a line-ending
// conversion.
func crlfOnly(p []byte) bool {
	crlf := bytes.Count(p, []byte("\r\n"))
	return bytes.Count(p, []byte("\n")) == crlf && bytes.Count(p, []byte("\r")) == crlf
}

// writeDotStuffed writes p, whose line breaks are all CRLF, as DATA
// content: a line that starts with "." is sent with another in front
// (RFC 5321 §4.5.2). It returns whether p ends with a line break; the end
// of data is written by writeEnd.
func writeDotStuffed(w *bufio.Writer, p []byte) (endsLine bool) {
	if len(p) == 0 {
		return false // as textproto: empty content is ended by a line break
	}
	if p[0] == '.' {
		_ = w.WriteByte('.')
	}
	for {
		k := bytes.Index(p, []byte("\n."))
		if k < 0 {
			_, _ = w.Write(p)
			break
		}
		_, _ = w.Write(p[:k+1])
		_ = w.WriteByte('.')
		p = p[k+1:]
	}
	return p[len(p)-1] == '\n'
}

// writeEnd buffers the end of the content: the line break it lacks
// (endsLine: none) and the final dot.
func writeEnd(w *bufio.Writer, endsLine bool) {
	if !endsLine {
		_, _ = w.WriteString("\r\n")
	}
	_, _ = w.WriteString(".\r\n")
}
