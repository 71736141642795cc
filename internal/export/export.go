// Package export writes contacts out as CSV or JSON lines, one at a time,
// so an export of any size is written in constant memory: `waymark
// export`, GET /api/v1/contacts/export and the dashboard's export button
// all stream through it, from a store that reads the contacts in pages.
//
// Each contact's segment memberships (DESIGN.md's export columns) are a
// column, and an export can be of one segment's members.
package export

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/waymark/waymark/rule"
)

// Contact is one exported contact. The db tags are the store's columns.
type Contact struct {
	ID     int64     `db:"id" json:"id"`
	UserID *string   `db:"user_id" json:"user_id"`
	Email  *string   `db:"email" json:"email"`
	Stage  string    `db:"stage" json:"stage"`
	Since  time.Time `db:"since" json:"since"` // entered its stage
	Status string    `db:"status" json:"status"`
	// Traits is the traits object as JSON.
	Traits json.RawMessage `db:"traits" json:"traits"`
	// Segments are the segments it is a member of, by name.
	Segments []string `db:"segments" json:"segments"`
}

// Query says which contacts to export: everyone, or those in Stage, or
// the members of Segment, or both.
type Query struct {
	Stage   string
	Segment string
}

// Check validates q; the error names the parameter.
func (q Query) Check() error {
	if q.Stage != "" && !slices.Contains(rule.Stages, rule.Stage(q.Stage)) {
		return fmt.Errorf("stage: %q is not a stage (awareness, consideration, decision, retention, advocacy)", q.Stage)
	}
	if strings.IndexFunc(q.Segment, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') }) >= 0 || len(q.Segment) > 100 {
		return fmt.Errorf("segment: %q is not a segment's name", q.Segment)
	}
	return nil
}

// Formats are the formats a Writer writes.
var Formats = []string{"csv", "jsonl"}

// ContentType is the media type of format.
func ContentType(format string) string {
	if format == "jsonl" {
		return "application/x-ndjson; charset=utf-8"
	}
	return "text/csv; charset=utf-8"
}

// Writer writes contacts in one format.
type Writer interface {
	Write(Contact) error
	// Flush writes out what is buffered; call it at the end (and when
	// a page is done, to stream).
	Flush() error
}

// NewWriter returns a writer of format ("csv" or "jsonl") on w.
func NewWriter(w io.Writer, format string) (Writer, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	switch format {
	case "csv":
		return &csvWriter{bw: bw, w: csv.NewWriter(bw)}, nil
	case "jsonl":
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		return &jsonlWriter{bw: bw, enc: enc}, nil
	}
	return nil, fmt.Errorf("format: %q is not a format (csv or jsonl)", format)
}

// Header is the CSV header.
var Header = []string{"id", "user_id", "email", "stage", "since", "status", "traits", "segments"}

type csvWriter struct {
	bw     *bufio.Writer
	w      *csv.Writer
	header bool
	row    [8]string
}

func (c *csvWriter) Write(k Contact) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(Header); err != nil {
			return err
		}
	}
	c.row = [8]string{strconv.FormatInt(k.ID, 10), deref(k.UserID), deref(k.Email), k.Stage,
		k.Since.UTC().Format(time.RFC3339Nano), k.Status, string(k.Traits), strings.Join(k.Segments, " ")}
	return c.w.Write(c.row[:])
}

func (c *csvWriter) Flush() error {
	if !c.header {
		// An empty export still says what its columns are.
		c.header = true
		if err := c.w.Write(Header); err != nil {
			return err
		}
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.bw.Flush()
}

type jsonlWriter struct {
	bw  *bufio.Writer
	enc *json.Encoder
}

func (j *jsonlWriter) Write(k Contact) error {
	k.Since = k.Since.UTC()
	if k.Segments == nil {
		k.Segments = []string{}
	}
	return j.enc.Encode(k)
}

func (j *jsonlWriter) Flush() error { return j.bw.Flush() }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Source reads the contacts q names, handing them over a page at a time
// (internal/store's ExportContacts).
type Source func(ctx context.Context, q Query, page func([]Contact) error) error

// Run writes what src reads for q to w, flushing after each page (so a
// reader sees the export as it is made; afterPage, if set, is called
// after each flush), and returns how many contacts it wrote.
func Run(ctx context.Context, src Source, q Query, w Writer, afterPage func()) (int, error) {
	n := 0
	err := src(ctx, q, func(cs []Contact) error {
		for _, c := range cs {
			if err := w.Write(c); err != nil {
				return fmt.Errorf("writing the export: %w", err)
			}
		}
		n += len(cs)
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing the export: %w", err)
		}
		if afterPage != nil {
			afterPage()
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := w.Flush(); err != nil {
		return n, fmt.Errorf("writing the export: %w", err)
	}
	return n, nil
}
