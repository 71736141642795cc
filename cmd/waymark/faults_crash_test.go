//go:build fault

package main

import "testing"

// Every process is killed with SIGKILL (nothing on the wire) and stays
// down across several ticks: the step that fell due goes out once at
// once after the restart; the enrolment that became due goes out once
// when the dead leader's scheduler lease has expired.
func TestFaultAllProcessesKilledAcrossTicks(t *testing.T) {
	t.Parallel()
	downAcrossTicks(t, true)
}
