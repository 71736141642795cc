package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/waymark/waymark/rule"
)

// prepareRollup brings the store's activity rollup up to date for needs
// before a pass over every contact, and reports whether pages can be read
// from it: a dry run uses it only as it is (it never rebuilds it), a pass
// that changes things may rebuild it. When it cannot, the pass reads the
// events.
func (e *Engine) prepareRollup(ctx context.Context, needs []rule.Aggregate, dry bool) (bool, error) {
	if p, ok := e.store.(DryRunPreparer); ok && dry {
		ok := p.PrepareDryRun(ctx, needs) == nil
		if !ok && ctx.Err() != nil {
			return false, ctx.Err()
		}
		return ok, nil
	}
	if p, ok := e.store.(SweepPreparer); ok && !dry {
		if err := p.PrepareSweep(ctx, needs); err != nil {
			if ctx.Err() != nil {
				return false, err
			}
			e.log.Warn("activity rollup unavailable; reading events", "err", err)
			return false, nil
		}
		return true, nil
	}
	return false, nil
}

// Scan hands every contact's facts for needs as of asOf to each, a page at
// a time in id order, loaded as a sweep loads them (from the activity
// rollup when the store keeps one, the next page while each runs), with
// the traits named (nil: all of them). It evaluates no rule and changes
// nothing; a dry scan does not rebuild the rollup either. Contacts whose
// facts cannot be loaded are left out (a sweep parks them). Broadcasts
// resolve their audiences so.
func (e *Engine) Scan(ctx context.Context, needs []rule.Aggregate, asOf time.Time, dry bool, traits []string, each func([]ContactFacts) error) error {
	rollup, err := e.prepareRollup(ctx, needs, dry)
	if err != nil {
		return err
	}
	batches := make(chan loaded, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.load(lctx, FactsQuery{}, FactsQuery{AsOf: asOf, Needs: needs, Rollup: rollup, Compact: true, SkipTraits: traits != nil && len(traits) == 0, TraitKeys: traits}, batches)
	for b := range batches {
		if b.err != nil {
			return fmt.Errorf("loading facts: %w", b.err)
		}
		if err := each(b.facts); err != nil {
			return err
		}
	}
	return ctx.Err()
}
