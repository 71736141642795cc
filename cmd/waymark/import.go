package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/store"
)

func cmdImport(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("import", &cfg, databaseFlags...)
	// Each chunk's events are COPYed in (contact, messageId) order: the
	// larger the chunk, the more of them land next to each other in the
	// events table's indexes (2M events: 20,000 a chunk 46 s, 100,000
	// 31 s, 200,000 30 s).
	chunk := fs.Int("chunk", 100000, "messages per transaction (fewer if they hold more than the workers' share of 96 MB)")
	workers := fs.Int("workers", 2, "concurrent transactions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *chunk < 1 || *workers < 1 {
		return errors.New("import: -chunk and -workers must be at least 1")
	}
	if fs.NArg() != 1 {
		return errors.New("import: name one FILE (JSON lines or CSV; - for standard input)")
	}
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	name := fs.Arg(0)
	in := e.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	pool, err := app.Connect(ctx, &cfg, e.logger(), int32(*workers)+2)
	if err != nil {
		return err
	}
	defer pool.Close()
	e.announce(pool)
	// The first 100 bad lines are listed, the reader's and the store's.
	var bad, refused int
	res, err := app.Import(ctx, store.New(pool), in, app.ImportOptions{
		Chunk: *chunk, Workers: *workers, Getenv: e.getenv,
		Bad: func(fe *ingest.FieldError) {
			bad++
			if bad <= 100 {
				fmt.Fprintf(e.stderr, "%s: line %d: %s\n", name, fe.Index, fieldMsg(fe))
			}
		},
		Refused: func(m ingest.Message, fe ingest.FieldError) {
			// Refused by the store (traits over the limit): named by
			// the message, whose line is not known here.
			refused++
			if refused <= 100 {
				fmt.Fprintf(e.stderr, "%s: user %q, messageId %q: %s: %s\n", name, m.UserID+m.AnonymousID, m.MessageID, fe.Field, fe.Msg)
			}
		},
	})
	var rerr *app.ReadError
	if errors.As(err, &rerr) {
		return fmt.Errorf("%s: %w", name, rerr.Err)
	}
	if err != nil {
		return fmt.Errorf("importing %s: %w", name, err)
	}
	if bad > 100 {
		fmt.Fprintf(e.stderr, "%s: … and %d more bad lines\n", name, bad-100)
	}
	fmt.Fprintln(e.stdout, res.Summary(name))
	if res.Bad > 0 {
		// The good lines are stored; a script must still hear that some
		// were not.
		return fmt.Errorf("import: %s: %d %s rejected (listed above); the other lines were stored", name, res.Bad, plural(res.Bad, "line was", "lines were"))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func fieldMsg(fe *ingest.FieldError) string {
	if fe.Field == "" {
		return fe.Msg
	}
	return fe.Field + ": " + fe.Msg
}
