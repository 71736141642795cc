package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/lifecycle"
)

func cmdHistory(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("history", &cfg, databaseFlags...)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("history: name one contact (id, userId, anonymousId or email)")
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	id, err := contactRef(ctx, st, "history", fs.Arg(0))
	if err != nil {
		return err
	}
	moves, err := st.History(ctx, id)
	if err != nil {
		return err
	}
	// Whether the stored rules move it back and forth on every pass.
	check, err := lifecycle.NewEngine(st, e.logger()).Check(ctx, id, clock.Now())
	if err != nil {
		return err
	}
	if len(moves) == 0 {
		fmt.Fprintf(e.stdout, "contact %d has not moved since it started in awareness\n", id)
	}
	for i, m := range moves {
		keys := make([]string, 0, len(m.Observed))
		for k := range m.Observed {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		saw := make([]string, len(keys))
		for i, k := range keys {
			saw[i] = fmt.Sprintf("%s = %v", k, m.Observed[k])
		}
		back := ""
		if i > 0 && m.From == moves[i-1].To && m.To == moves[i-1].From {
			back = "  ↺ back"
		}
		fmt.Fprintf(e.stdout, "%s  %s → %s  by %s v%d (%s)  saw: %s%s\n", m.At.UTC().Format(time.RFC3339), m.From, m.To, m.Rule, m.Version, m.Trigger, strings.Join(saw, ", "), back)
	}
	if rules, stages, ok := lifecycle.LoopOf(check); ok {
		l := lifecycle.Loop{Rules: rules, Stages: stages}
		n := 0
		for _, m := range moves {
			if slices.Contains(rules, m.Rule) {
				n++
			}
		}
		fmt.Fprintf(e.stdout, "flipping: rules %s move this contact back and forth on every pass, with no new activity (%d %s by them so far); change a condition so they cannot all hold at once (waymark apply --dry-run lists such loops)\n",
			l, n, plural(n, "move", "moves"))
	}
	return nil
}
