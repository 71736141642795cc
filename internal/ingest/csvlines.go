package ingest

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

// csvRecords reads CSV records with the file line each starts on, and
// never lets a broken record take good lines with it: a quote that is not
// closed where it should be swallows every line up to the next quote (or
// to the end of the file) into one record. When a record that ran over
// several lines is rejected, the lines after its first are read again as
// records of their own (reread), so a good row after a bad one is still
// imported and a bad one is reported at its own line.
type csvRecords struct {
	stack []*csvSource // the file, then any lines being read again
	last  csvRecord
}

// csvRecord is one record and where it was in the file.
type csvRecord struct {
	fields      []string
	first, last int // file lines it starts and ends on
	src         *csvSource
	raw         []byte // its bytes, as read (kept for reread)
}

// csvSource is a stream of CSV text whose line 1 is file line offset+1.
type csvSource struct {
	rec    *recorder
	cr     *csv.Reader
	offset int
	line   int // the csv reader's line at the record about to be read
}

func newCSVSource(r io.Reader, offset int) *csvSource {
	rec := &recorder{r: r}
	cr := csv.NewReader(rec)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &csvSource{rec: rec, cr: cr, offset: offset, line: 1}
}

func newCSVRecords(r io.Reader) *csvRecords {
	return &csvRecords{stack: []*csvSource{newCSVSource(r, 0)}}
}

// next returns the next record; a record that cannot be parsed is a
// *FieldError at the line it starts on, saying which lines it swallowed
// (they are read again: see reread, which next calls itself for parse
// errors). It returns io.EOF at the end.
func (c *csvRecords) next() (csvRecord, error) {
	for len(c.stack) > 0 {
		s := c.stack[len(c.stack)-1]
		from := s.cr.InputOffset()
		s.rec.forget(from)
		fields, err := s.cr.Read()
		if errors.Is(err, io.EOF) {
			c.stack = c.stack[:len(c.stack)-1]
			continue
		}
		to := s.cr.InputOffset()
		raw := s.rec.slice(from, to)
		startLine := s.line
		s.line += bytes.Count(raw, []byte{'\n'})
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			c.last = csvRecord{first: s.offset + pe.StartLine, last: s.offset + pe.Line, src: s, raw: raw}
			// raw starts on startLine (blank lines may come before the
			// record's own first line).
			c.last.raw = afterLines(raw, pe.StartLine-startLine)
			msg := pe.Err.Error()
			if pe.Line == pe.StartLine {
				msg = fmt.Sprintf("column %d: %s", pe.Column, msg)
			} else if errors.Is(pe.Err, csv.ErrQuote) {
				msg = fmt.Sprintf("a quoted value opened on this line is not closed before line %d (column %d: %s)", pe.Line, pe.Column, msg)
			}
			msg += c.reread()
			return c.last, &FieldError{Index: c.last.first, Msg: msg}
		}
		if err != nil {
			return csvRecord{}, err
		}
		line, _ := s.cr.FieldPos(0)
		c.last = csvRecord{fields: fields, first: s.offset + line, last: s.offset + s.line - 1, src: s, raw: afterLines(raw, line-startLine)}
		if len(raw) > 0 && raw[len(raw)-1] != '\n' {
			c.last.last++ // the last line has no newline
		}
		return c.last, nil
	}
	return csvRecord{}, io.EOF
}

// reread arranges for the lines the last record swallowed (all but its
// first) to be read next, as records of their own, and says so in words
// to add to the record's rejection ("" if it had one line).
func (c *csvRecords) reread() string {
	r := c.last
	if r.last <= r.first {
		return ""
	}
	rest := afterLines(r.raw, 1)
	if len(bytes.TrimSpace(rest)) == 0 {
		return ""
	}
	c.stack = append(c.stack, newCSVSource(bytes.NewReader(bytes.Clone(rest)), r.first))
	if r.last == r.first+1 {
		return fmt.Sprintf("; the row is rejected, and line %d, which it had swallowed, is read on its own", r.last)
	}
	return fmt.Sprintf("; the row is rejected, and lines %d-%d, which it had swallowed, are read on their own", r.first+1, r.last)
}

// afterLines returns b after its first n lines.
func afterLines(b []byte, n int) []byte {
	for ; n > 0; n-- {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil
		}
		b = b[i+1:]
	}
	return b
}

// recorder keeps the bytes read through it from offset base on, so that a
// record's text can be found again by the csv reader's offsets.
type recorder struct {
	r    io.Reader
	buf  []byte
	base int64
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

func (r *recorder) slice(from, to int64) []byte { return r.buf[from-r.base : to-r.base] }

// forget drops the bytes before offset upTo, a few at a time.
func (r *recorder) forget(upTo int64) {
	if k := upTo - r.base; k >= 64<<10 {
		r.buf = append(r.buf[:0], r.buf[k:]...)
		r.base = upTo
	}
}
