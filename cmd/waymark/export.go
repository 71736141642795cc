package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/export"
	"github.com/waymark/waymark/internal/store"
)

// cmdExport streams contacts (everyone, or a stage) as CSV or JSON lines
// to stdout or a file, in constant memory whatever their number.
func cmdExport(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("export", &cfg, databaseFlags...)
	stage := fs.String("stage", "", "only the contacts in this stage")
	segment := fs.String("segment", "", "only the members of this segment")
	format := fs.String("format", "csv", "csv or jsonl")
	out := fs.String("o", "", "write to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("export: unexpected argument %q", fs.Arg(0))
	}
	q := export.Query{Stage: *stage, Segment: *segment}
	if err := q.Check(); err != nil {
		return fmt.Errorf("export: --%w", err)
	}
	var dst io.Writer = e.stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer f.Close()
		dst = f
	}
	w, err := export.NewWriter(dst, *format)
	if err != nil {
		return fmt.Errorf("export: --%w", err)
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	n, err := export.Run(ctx, st.ExportContacts, q, w, nil)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("export: --%w", err)
	}
	if err != nil {
		return fmt.Errorf("export: %w (%d contacts were written)", err, n)
	}
	if *out != "" {
		fmt.Fprintf(e.stderr, "waymark: %d contacts written to %s\n", n, *out)
	}
	return nil
}
