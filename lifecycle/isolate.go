package lifecycle

import (
	"context"
	"errors"
	"time"
)

// ErrContactData marks a failure caused by the data of the contacts being
// worked on — a value PostgreSQL cannot convert, a row a constraint or a
// trigger refuses — rather than by the database being unreachable. Stores
// wrap such errors so that errors.Is(err, ErrContactData) holds. The
// engine and the sender then retry the work in halves, down to single
// contacts (Isolate), and set aside the contacts that still fail, so that
// one bad row never stops the others.
var ErrContactData = errors.New("a contact's data could not be processed")

// Isolate runs fn on items. When that fails with an error wrapping
// ErrContactData, it runs fn on each half of items in turn, down to single
// items, and hands each single item that still fails to bad, with its
// error; fn must be safe to run again on items it saw fail. Any other
// error, or ctx ending, stops it and is returned.
func Isolate[T any](ctx context.Context, items []T, fn func(part []T) error, bad func(item T, err error)) error {
	if len(items) == 0 {
		return nil
	}
	err := fn(items)
	if err == nil || !errors.Is(err, ErrContactData) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(items) == 1 {
		bad(items[0], err)
		return nil
	}
	h := len(items) / 2
	if err := Isolate(ctx, items[:h], fn, bad); err != nil {
		return err
	}
	return Isolate(ctx, items[h:], fn, bad)
}

// Parked is a contact set aside by an evaluation, and why: its facts could
// not be loaded, its moves or enrolments not recorded, or a rule could not
// be evaluated on its data.
type Parked struct {
	ID     int64
	Reason string
	At     time.Time
}

// Parker is implemented by stores that record parked contacts, for the API
// and the dashboard to show. The engine parks a contact when its
// evaluation fails and unparks it when a later one succeeds; every
// scheduled sweep evaluates parked contacts again.
type Parker interface {
	Park(ctx context.Context, ps []Parked) error
	Unpark(ctx context.Context, ids []int64) error
	// ParkedContacts returns the parked contacts' reasons.
	ParkedContacts(ctx context.Context) (map[int64]string, error)
}

// Pager is implemented by stores that can list a page of a pass over every
// contact by id alone: when a page's facts fail to load on one contact's
// data, the engine loads its contacts by id, in halves, instead.
type Pager interface {
	PageIDs(ctx context.Context, after int64, limit int, asOf time.Time) ([]int64, error)
}
