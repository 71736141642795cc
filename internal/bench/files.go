package bench

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

// WriteJSONL writes events [0, n) to path as JSON lines, the shape
// `waymark import` reads, and returns the file's size.
func (g *Gen) WriteJSONL(path string, n int) (int64, error) {
	return writeLines(path, n, func(b []byte, i int) []byte {
		e := g.Event(i)
		b = e.AppendJSON(b)
		return append(b, '\n')
	})
}

// WriteCopyText writes events [0, n) to path as the rows the events table
// would hold, in COPY's text format, and returns the file's size.
func (g *Gen) WriteCopyText(path string, n int, received time.Time) (int64, error) {
	return writeLines(path, n, func(b []byte, i int) []byte {
		e := g.Event(i)
		return e.AppendCopyRow(b, received)
	})
}

func writeLines(path string, n int, line func(b []byte, i int) []byte) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var b []byte
	var size int64
	for i := 0; i < n; i++ {
		b = line(b[:0], i)
		size += int64(len(b))
		if _, err := w.Write(b); err != nil {
			f.Close()
			return 0, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("writing %s: %w", path, err)
	}
	return size, nil
}
