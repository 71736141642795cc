package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/waymark/waymark/internal/clock"
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
	chunk := fs.Int("chunk", 100000, "messages per transaction")
	workers := fs.Int("workers", 2, "concurrent transactions")
	if err := fs.Parse(args); err != nil {
		return err
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
	log := e.logger()
	pool, err := connect(ctx, &cfg, log, int32(*workers)+2)
	if err != nil {
		return err
	}
	defer pool.Close()
	e.announce(pool)
	// One importer for the whole file: it remembers the user ids it has
	// resolved, so only a user's first chunk looks it up.
	im := store.New(pool).NewImporter()

	start := time.Now()
	var (
		mu      sync.Mutex
		stored  int
		dupes   int
		badN    int
		firstEr error
		// refusedN counts the lines the store refused (under mu, as
		// the workers see them; badN is the reader's).
		refusedN int
	)
	chunks := make(chan []ingest.Message, *workers)
	var wg sync.WaitGroup
	for i := 0; i < *workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				res, err := im.Import(ctx, c)
				mu.Lock()
				if err != nil && firstEr == nil {
					firstEr = err
				}
				stored += res.Stored
				dupes += res.Duplicates
				for _, fe := range res.Refused {
					// Refused by the store (traits over the limit): named
					// by the message, whose line is not known here.
					refusedN++
					if refusedN <= 100 {
						m := c[fe.Index]
						fmt.Fprintf(e.stderr, "%s: user %q, messageId %q: %s: %s\n", name, m.UserID+m.AnonymousID, m.MessageID, fe.Field, fe.Msg)
					}
				}
				mu.Unlock()
			}
		}()
	}
	readErr := ingest.ReadFile(in, clock.Now(), *chunk, func(ms []ingest.Message) error {
		mu.Lock()
		err := firstEr
		mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case chunks <- ms:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, func(fe *ingest.FieldError) {
		badN++
		if badN <= 100 {
			fmt.Fprintf(e.stderr, "%s: line %d: %s\n", name, fe.Index, fieldMsg(fe))
		}
	})
	close(chunks)
	wg.Wait()
	if readErr != nil {
		return fmt.Errorf("%s: %w", name, readErr)
	}
	if firstEr != nil {
		return fmt.Errorf("importing %s: %w", name, firstEr)
	}
	if badN > 100 {
		fmt.Fprintf(e.stderr, "%s: … and %d more bad lines\n", name, badN-100)
	}
	badN += refusedN
	el := time.Since(start)
	fmt.Fprintf(e.stdout, "imported %s: %d stored, %d already there, %d bad lines, in %.2fs (%.0f/s)\n",
		name, stored, dupes, badN, el.Seconds(), float64(stored+dupes)/el.Seconds())
	if badN > 0 {
		// The good lines are stored; a script must still hear that some
		// were not.
		return fmt.Errorf("import: %s: %d %s rejected (listed above); the other lines were stored", name, badN, plural(badN, "line was", "lines were"))
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
