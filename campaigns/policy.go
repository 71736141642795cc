package campaigns

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/waymark/waymark/rule"
)

// The sending policies a send is held or delayed by: holds, the frequency
// cap, quiet hours in the contact's time zone, and the back-off between
// retries.

// backoff is exponential with jitter: about 1, 2, 4 … minutes, at most 2h.
func backoff(attempts int) time.Duration {
	d := time.Minute << min(attempts, 7)
	if d > 2*time.Hour {
		d = 2 * time.Hour
	}
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// holding returns the first hold that holds for f, or that cannot be
// evaluated on f (with the error); "" if none.
func holding(holds []Hold, progs []*rule.Program, f *rule.Facts) (string, error) {
	for i, p := range progs {
		if ok, err := p.Eval(f); err != nil || ok {
			return holds[i].Name, err
		}
	}
	return "", nil
}

// capped reports whether the frequency cap holds a send back, and until
// when: until the oldest email in the window leaves it.
func capped(set Settings, window []time.Time, now time.Time) (time.Time, bool) {
	if set.CapMax <= 0 || set.CapPer <= 0 {
		return time.Time{}, false
	}
	var in []time.Time
	for _, t := range window {
		if t.After(now.Add(-set.CapPer)) {
			in = append(in, t)
		}
	}
	if len(in) < set.CapMax {
		return time.Time{}, false
	}
	oldest := in[0]
	for _, t := range in {
		if t.Before(oldest) {
			oldest = t
		}
	}
	return oldest.Add(set.CapPer).Add(time.Second), true
}

// of is the time zone of a contact with traits: its timezone trait when it
// names a zone, else fallback.
func (z *zoneCache) of(traits map[string]any, fallback *time.Location) *time.Location {
	if tz, ok := traits["timezone"].(string); ok && tz != "" && tz != "Local" {
		if l, err := z.load(tz); err == nil {
			return l
		}
	}
	return fallback
}

// quiet reports whether now falls in the quiet hours of the contact's time
// zone, and when they end. The end is computed in the zone's calendar, so
// daylight-saving changes neither skip nor double it.
func quiet(set Settings, traits map[string]any, now time.Time, zones *zoneCache) (time.Time, bool) {
	if set.QuietStart == set.QuietEnd {
		return time.Time{}, false
	}
	loc := zones.of(traits, zones.location(set.DefaultTimezone))
	local := now.In(loc)
	m := local.Hour()*60 + local.Minute()
	in := false
	if set.QuietStart < set.QuietEnd {
		in = m >= set.QuietStart && m < set.QuietEnd
	} else {
		in = m >= set.QuietStart || m < set.QuietEnd
	}
	if !in {
		return time.Time{}, false
	}
	end := time.Date(local.Year(), local.Month(), local.Day(), set.QuietEnd/60, set.QuietEnd%60, 0, 0, loc)
	if !end.After(local) {
		end = time.Date(local.Year(), local.Month(), local.Day()+1, set.QuietEnd/60, set.QuietEnd%60, 0, 0, loc)
	}
	return end.UTC(), true
}

// zoneCache loads time zones by name once each: time.LoadLocation reads and
// parses the system's zone file on every call (two calls a send were 14%
// of a sender's CPU). The zero value is ready to use.
type zoneCache struct {
	mu sync.Mutex
	m  map[string]zoneLoad
}

type zoneLoad struct {
	loc *time.Location
	err error
}

func (z *zoneCache) load(name string) (*time.Location, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if l, ok := z.m[name]; ok {
		return l.loc, l.err
	}
	loc, err := time.LoadLocation(name)
	if z.m == nil {
		z.m = map[string]zoneLoad{}
	}
	if len(z.m) < 10_000 { // names come from contacts' traits: bounded
		z.m[name] = zoneLoad{loc, err}
	}
	return loc, err
}

// location is the zone called name, or UTC if there is none such.
func (z *zoneCache) location(name string) *time.Location {
	if l, err := z.load(name); err == nil && name != "" && name != "Local" {
		return l
	}
	return time.UTC
}
