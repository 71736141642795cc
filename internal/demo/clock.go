// Package demo is the simulation behind `waymark demo`: a population of
// customers with distinct personas (browsers who never buy, one-time
// buyers, loyal regulars, a customer with a complaint, lapsed customers…)
// whose activity is sent through Waymark's real ingestion API on an
// accelerated clock.
//
// The clock is honest: events carry simulated timestamps, and rules,
// campaigns, sweeps and the sender all read the same Clock, so everything
// Waymark does happens "as of" a simulated instant, exactly as
// `waymark tick --as-of` would do it. Nothing is written to the database
// except through Waymark itself.
package demo

import (
	"sync"
	"time"

	"github.com/waymark/waymark/internal/clock"
)

// Clock is the simulation's clock: it stands at the instant the
// simulation has reached, moves only forward, and once live follows the
// wall clock. It is safe for concurrent use.
type Clock struct {
	mu   sync.Mutex
	t    time.Time
	live bool
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t.UTC()} }

// Now is the simulated instant.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		if now := clock.Now().UTC(); now.After(c.t) {
			c.t = now
		}
	}
	return c.t
}

// Set moves the clock forward to t; an earlier t is ignored.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t.UTC()
	}
}

// GoLive makes the clock follow the wall clock from now on (never going
// back).
func (c *Clock) GoLive() {
	c.mu.Lock()
	c.live = true
	c.mu.Unlock()
}

// Live reports whether the clock follows the wall clock.
func (c *Clock) Live() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}
