package rule

import (
	"fmt"
	"strconv"
	"time"
)

// Day and year lengths used by windows. A year is always 365 days: windows
// are about recency, not calendars.
const (
	day  = 24 * time.Hour
	week = 7 * day
	year = 365 * day

	// maxWindow bounds a window so that its duration cannot overflow and a
	// typo such as "3650000d" is caught when the rule is saved.
	maxWindow = 100 * year
)

// Window is how far back an activity function looks: a duration ending
// now, all of the contact's history, or — in a sequence's step conditions,
// exit and goal only — everything since the contact entered the sequence.
// Exactly one of its fields is set. Window is comparable, so equal windows
// written differently ("1y" and "365d") are the same map key.
type Window struct {
	Dur       time.Duration // the last Dur, when positive
	All       bool          // the whole history
	Enrolment bool          // since the contact entered the sequence
}

// ParseWindow parses a window as written in a rule: a positive whole number
// followed by a unit, m (minutes), h (hours), d (days), w (weeks) or y (365
// days), such as "30m", "12h", "14d", "8w" and "1y"; or "all"; or
// "enrolment". Whether "enrolment" is allowed where the window is used is
// for the caller to decide (see [CompileOptions]).
func ParseWindow(s string) (Window, error) {
	switch s {
	case "all":
		return Window{All: true}, nil
	case "enrolment":
		return Window{Enrolment: true}, nil
	}
	bad := fmt.Errorf("unknown window %q: use 30m, 12h, 14d, 8w, 1y or all", s)
	if len(s) < 2 {
		return Window{}, bad
	}
	digits, unit := s[:len(s)-1], s[len(s)-1]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return Window{}, bad
		}
	}
	var per time.Duration
	switch unit {
	case 'm':
		per = time.Minute
	case 'h':
		per = time.Hour
	case 'd':
		per = day
	case 'w':
		per = week
	case 'y':
		per = year
	default:
		return Window{}, bad
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > int64(maxWindow/per) {
		return Window{}, fmt.Errorf("window %q is too long: at most 100y", s)
	}
	if n == 0 {
		return Window{}, fmt.Errorf("window %q is empty: use a positive number, like \"14d\"", s)
	}
	return Window{Dur: time.Duration(n) * per}, nil
}

// String returns the window's canonical form, which [ParseWindow] accepts:
// "all", "enrolment", or the duration in the largest of days, hours and
// minutes that divides it exactly ("8w" is "56d", "1y" is "365d", "90m" is
// "90m"). The zero Window, used by functions without a window, is "".
func (w Window) String() string {
	switch {
	case w.All:
		return "all"
	case w.Enrolment:
		return "enrolment"
	case w.Dur <= 0:
		return ""
	case w.Dur%day == 0:
		return strconv.FormatInt(int64(w.Dur/day), 10) + "d"
	case w.Dur%time.Hour == 0:
		return strconv.FormatInt(int64(w.Dur/time.Hour), 10) + "h"
	default:
		return strconv.FormatInt(int64(w.Dur/time.Minute), 10) + "m"
	}
}

// Since returns the start of the window for a window ending at now, and
// whether it has one: an "all" window reaches back forever and an
// "enrolment" window depends on the sequence, so both report false.
func (w Window) Since(now time.Time) (time.Time, bool) {
	if w.Dur <= 0 {
		return time.Time{}, false
	}
	return now.Add(-w.Dur), true
}
