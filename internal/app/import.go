package app

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/store"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// Chunk is how many messages one transaction holds at most (fewer if
	// they hold more than the workers' share of importChunksMemory).
	Chunk int
	// Workers is how many transactions run at once.
	Workers int
	// Getenv reads the environment (GOMEMLIMIT: see Import).
	Getenv func(string) string
	// Bad is called for each line the reader rejects (Index: the line).
	Bad func(fe *ingest.FieldError)
	// Refused is called, under a lock, for each message the store refused
	// (traits over the limit), whose line is not known.
	Refused func(m ingest.Message, fe ingest.FieldError)
}

// ImportResult is what an import did.
type ImportResult struct {
	Stored, Duplicates int
	// Bad are the lines rejected: by the reader, and by the store.
	Bad     int
	Elapsed time.Duration
}

// Summary is the line `waymark import` prints for file name.
func (r ImportResult) Summary(name string) string {
	return fmt.Sprintf("imported %s: %d stored, %d already there, %d bad lines, in %.2fs (%.0f/s)",
		name, r.Stored, r.Duplicates, r.Bad, r.Elapsed.Seconds(), float64(r.Stored+r.Duplicates)/r.Elapsed.Seconds())
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

// Import bulk-loads in (Segment-shaped JSON lines, or CSV) into st: the
// reader's chunks go to opts.Workers concurrent transactions. Its memory
// does not grow with the file: the chunks in memory are the workers' and
// the one the reader has ready, together at most importChunksMemory, and
// a soft limit makes the garbage collector work harder before the process
// goes over importMemoryLimit (unless GOMEMLIMIT sets one).
func Import(ctx context.Context, st *store.Store, in io.Reader, opts ImportOptions) (ImportResult, error) {
	chunkBytes := importChunksMemory / (opts.Workers + 1)
	defer softMemoryLimit(opts.Getenv, importMemoryLimit)()
	// One importer for the whole file: it remembers the user ids it has
	// resolved, so only a user's first chunk looks it up.
	im := st.NewImporter()

	start := time.Now()
	var (
		mu      sync.Mutex
		res     ImportResult
		firstEr error
		// refusedN counts the lines the store refused (under mu, as
		// the workers see them; badN is the reader's).
		refusedN int
		badN     int
	)
	// Unbuffered: the chunks in memory at once are the workers' and the
	// one the reader has ready, whatever the file's size.
	chunks := make(chan []ingest.Message)
	var wg sync.WaitGroup
	for i := 0; i < opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				r, err := im.Import(ctx, c)
				mu.Lock()
				if err != nil && firstEr == nil {
					firstEr = err
				}
				res.Stored += r.Stored
				res.Duplicates += r.Duplicates
				for _, fe := range r.Refused {
					refusedN++
					if opts.Refused != nil {
						opts.Refused(c[fe.Index], fe)
					}
				}
				mu.Unlock()
			}
		}()
	}
	readErr := ingest.ReadFileBytes(in, clock.Now(), opts.Chunk, chunkBytes, func(ms []ingest.Message) error {
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
		if opts.Bad != nil {
			opts.Bad(fe)
		}
	})
	close(chunks)
	wg.Wait()
	res.Bad = badN + refusedN
	res.Elapsed = time.Since(start)
	if readErr != nil {
		return res, &ReadError{readErr}
	}
	return res, firstEr
}

// ReadError is an import stopped by its input (a line too long, a read
// failing), rather than by the database.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

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
