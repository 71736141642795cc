package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
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
	chunk := fs.Int("chunk", 100000, "messages per transaction (fewer if they hold more than the workers' share of 96 MB)")
	workers := fs.Int("workers", 2, "concurrent transactions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *chunk < 1 || *workers < 1 {
		return errors.New("import: -chunk and -workers must be at least 1")
	}
	// The import's memory does not grow with the file: the chunks in
	// memory are the workers' and the one the reader has ready, together
	// at most importChunksMemory, and the soft limit makes the garbage
	// collector work harder before the process goes over it.
	chunkBytes := importChunksMemory / (*workers + 1)
	defer softMemoryLimit(e.getenv, importMemoryLimit)()
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
	// Unbuffered: the chunks in memory at once are the workers' and the
	// one the reader has ready, whatever the file's size.
	chunks := make(chan []ingest.Message)
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
	readErr := ingest.ReadFileBytes(in, clock.Now(), *chunk, chunkBytes, func(ms []ingest.Message) error {
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

// What an import holds in memory: its chunks at most importChunksMemory
// (as Message.Size counts them), and a soft limit on all of the
// process's memory. The chunks are the most of it; the rest is what the
// workers build from their chunks (about as much again at worst, for
// identify calls) and the garbage collector's headroom.
const (
	importChunksMemory = 96 << 20
	importMemoryLimit  = 200 << 20
)

// softMemoryLimit sets the Go runtime's soft memory limit to limit, unless
// GOMEMLIMIT sets one or one is set already, and returns what puts it
// back.
func softMemoryLimit(getenv func(string) string, limit int64) func() {
	if getenv("GOMEMLIMIT") != "" || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		return func() {}
	}
	debug.SetMemoryLimit(limit)
	return func() { debug.SetMemoryLimit(math.MaxInt64) }
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
