package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
)

// tickBroadcasts is a tick's broadcast work: runs whose time came start,
// their audiences are queued, A/B tests due are decided.
func tickBroadcasts(ctx context.Context, e *env, st *store.Store, eng *lifecycle.Engine, log *slog.Logger, at time.Time) error {
	bst, err := campaigns.NewBroadcaster(st, eng, log).Tick(ctx, at)
	if err != nil {
		return err
	}
	if bst.Started+bst.Resolved+bst.Decided > 0 {
		fmt.Fprintf(e.stdout, "broadcasts: %d runs started, %d queued (%d emails), %d A/B tests decided\n", bst.Started, bst.Resolved, bst.Queued, bst.Decided)
	}
	return nil
}
