package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/store"
)

// cmdSequences lists, pauses and resumes sequences.
func cmdSequences(ctx context.Context, e *env, args []string) error {
	what := args[0]
	var cfg config.Config
	fs := e.flags("sequences "+what, &cfg, databaseFlags...)
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case what == "list" && len(pos) > 0:
		return fmt.Errorf("sequences list: unexpected argument %q", pos[0])
	case what != "list" && len(pos) != 1:
		return fmt.Errorf("sequences %s: name one sequence (waymark sequences list)", what)
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	var name string
	if len(pos) > 0 {
		name = pos[0]
	}
	switch what {
	case "pause":
		n, err := st.PauseSequence(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("sequences pause: no sequence %q (waymark sequences list)", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "paused %s: it enrols nobody, and its %d queued %s wait until 'waymark sequences resume %s' (an email already being sent goes out)\n", name, n, plural(n, "email", "emails"), name)
	case "resume":
		n, err := st.ResumeSequence(ctx, name, clock.Now())
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("sequences resume: %q is not paused", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "resumed %s: it enrols again, and %d waiting %s released: each is due at its own time, or at the next sender pass if that has passed\n", name, n, plural(n, "email was", "emails were"))
	default:
		return listSequences(ctx, e, st, false)
	}
	return nil
}
