// Package clock is the wall clock Waymark decides by: when a rule is
// evaluated, a step falls due, a link expires, an import is received.
// Everything that takes "now" from the machine takes it from Now, so the
// whole program — and the test suite — can be run as if on another date.
//
// WAYMARK_CLOCK_SHIFT (a Go duration such as 8760h, a year ahead; read
// once, at first use) moves it. It exists to prove that no test depends
// on today's date: `WAYMARK_CLOCK_SHIFT=8760h go test ./...` runs the
// suite a year from now (docs/testing.md, "The test command"). PostgreSQL's own
// now(), used only for operational times (claims, leases, updated_at), is
// not moved. Never set it in production.
package clock

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// ShiftVar names the environment variable that moves the clock.
const ShiftVar = "WAYMARK_CLOCK_SHIFT"

var shift = sync.OnceValue(func() time.Duration {
	v := os.Getenv(ShiftVar)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%q: want a Go duration such as 8760h: %v", ShiftVar, v, err))
	}
	return d
})

// Now is the current time, moved by WAYMARK_CLOCK_SHIFT when it is set.
func Now() time.Time { return time.Now().Add(shift()) }

// Shift is how far WAYMARK_CLOCK_SHIFT moves the clock (0 when unset).
func Shift() time.Duration { return shift() }
