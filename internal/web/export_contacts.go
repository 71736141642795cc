package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/export"
)

// exportWriteTime is how long the client may take to read each page of an
// export (the server's WriteTimeout would cut a large one off).
const exportWriteTime = 60 * time.Second

// exportParams reads ?stage=&format=&segment=; the error names the
// parameter.
func exportParams(r *http.Request) (export.Query, string, string, error) {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = "csv"
	}
	if !slices.Contains(export.Formats, format) {
		return export.Query{}, "", "format", fmt.Errorf("format: %q is not a format (csv or jsonl)", format)
	}
	eq := export.Query{Stage: q.Get("stage"), Segment: q.Get("segment")}
	if err := eq.Check(); err != nil {
		field, _, _ := strings.Cut(err.Error(), ":")
		return export.Query{}, "", field, err
	}
	return eq, format, "", nil
}

// apiExportContacts is GET /api/v1/contacts/export?stage=&format=csv|jsonl.
func (s *Server) apiExportContacts(w http.ResponseWriter, r *http.Request) {
	q, format, field, err := exportParams(r)
	if err != nil {
		fieldError(w, http.StatusBadRequest, field, "%v", err)
		return
	}
	s.streamExport(w, r, q, format, func(err error) {
		if errors.Is(err, campaigns.ErrNoSegment) {
			fieldError(w, http.StatusBadRequest, "segment", "%v", err)
			return
		}
		s.internal(w, r, err)
	})
}

// exportContactsPage is the dashboard's export button:
// GET /dashboard/contacts/export?stage=&format=.
func (s *Server) exportContactsPage(w http.ResponseWriter, r *http.Request) {
	q, format, _, err := exportParams(r)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	s.streamExport(w, r, q, format, func(err error) {
		if errors.Is(err, campaigns.ErrNoSegment) {
			s.badRequest(w, r, err)
			return
		}
		s.failed(w, r, err)
	})
}

// streamExport writes the export as an attachment, a page at a time. A
// failure before the first byte is answered by failed; after it, the
// response is cut off (the client sees an incomplete transfer, never a
// short file that looks whole).
func (s *Server) streamExport(w http.ResponseWriter, r *http.Request, q export.Query, format string, failed func(error)) {
	cw := &countingWriter{w: w}
	ew, err := export.NewWriter(cw, format)
	if err != nil {
		failed(err)
		return
	}
	name := "contacts"
	for _, part := range []string{q.Stage, q.Segment} {
		if part != "" {
			name += "-" + part
		}
	}
	name += "-" + clock.Now().UTC().Format("2006-01-02") + "." + format
	h := w.Header()
	h.Set("Content-Type", export.ContentType(format))
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(exportWriteTime))
	start := time.Now()
	n, err := export.Run(r.Context(), s.st.ExportContacts, q, ew, func() {
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Now().Add(exportWriteTime))
	})
	if err != nil {
		if cw.n == 0 {
			h.Del("Content-Disposition")
			failed(err)
			return
		}
		s.log.Error("exporting contacts", "stage", q.Stage, "written", n, "err", err)
		panic(http.ErrAbortHandler)
	}
	if time.Since(start) > 2*time.Second {
		s.log.Info("contacts exported", "stage", q.Stage, "format", format, "contacts", n, "took", time.Since(start).Round(time.Millisecond))
	}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
