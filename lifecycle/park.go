package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// parkedSet is what the engine knows of the parked contacts: their
// reasons, loaded from a Parker store at each sweep and kept up to date by
// the engine's own parking, so that a contact already parked for the same
// reason is not written again, and one that is not parked costs no write.
type parkedSet struct {
	mu sync.Mutex
	m  map[int64]string
}

// loadParked reloads the parked contacts, if the store keeps them.
func (e *Engine) loadParked(ctx context.Context) error {
	p, ok := e.store.(Parker)
	if !ok {
		return nil
	}
	m, err := p.ParkedContacts(ctx)
	if err != nil {
		return fmt.Errorf("loading parked contacts: %w", err)
	}
	e.parked.mu.Lock()
	e.parked.m = m
	e.parked.mu.Unlock()
	return nil
}

// parking collects a batch's parks and unparks for one write (flush).
type parking struct {
	e      *Engine
	dry    bool
	park   []Parked
	unpark []int64
}

func (e *Engine) parking(dry bool) *parking { return &parking{e: e, dry: dry} }

// add parks contact id with reason, unless it is parked for it already.
func (p *parking) add(id int64, at time.Time, reason string) {
	if p.dry {
		return
	}
	reason = cleanReason(reason)
	ps := &p.e.parked
	ps.mu.Lock()
	same := ps.m != nil && ps.m[id] == reason
	ps.mu.Unlock()
	if !same {
		p.park = append(p.park, Parked{ID: id, Reason: reason, At: at})
	}
}

// cleanReason is reason as text PostgreSQL stores: valid UTF-8 without
// NUL, at most 1000 bytes.
func cleanReason(reason string) string {
	reason = strings.ReplaceAll(strings.ToValidUTF8(reason, "\uFFFD"), "\x00", "\uFFFD")
	n := 1000
	if len(reason) <= n {
		return reason
	}
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// clear unparks the contacts of batch that are parked and for which ok
// holds (their evaluation went through).
func (p *parking) clear(batch []ContactFacts, ok func(i int) bool) {
	if p.dry {
		return
	}
	ps := &p.e.parked
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.m) == 0 {
		return
	}
	for i := range batch {
		if _, parked := ps.m[batch[i].ID]; parked && ok(i) {
			p.unpark = append(p.unpark, batch[i].ID)
		}
	}
}

// flush writes what was collected (logged too, when the store keeps no
// parked contacts).
func (p *parking) flush(ctx context.Context) error {
	if len(p.park) == 0 && len(p.unpark) == 0 {
		return nil
	}
	for i, c := range p.park {
		if i == 10 {
			p.e.log.Warn("more contacts parked", "count", len(p.park)-i)
			break
		}
		p.e.log.Warn("contact parked: its evaluation failed; the others go on", "contact", c.ID, "reason", c.Reason)
	}
	if st, ok := p.e.store.(Parker); ok {
		if len(p.park) > 0 {
			if err := st.Park(ctx, p.park); err != nil {
				return fmt.Errorf("parking contacts: %w", err)
			}
		}
		if len(p.unpark) > 0 {
			if err := st.Unpark(ctx, p.unpark); err != nil {
				return fmt.Errorf("unparking contacts: %w", err)
			}
		}
	}
	ps := &p.e.parked
	ps.mu.Lock()
	if ps.m == nil {
		ps.m = map[int64]string{}
	}
	for _, c := range p.park {
		ps.m[c.ID] = c.Reason
	}
	for _, id := range p.unpark {
		delete(ps.m, id)
	}
	ps.mu.Unlock()
	p.park, p.unpark = p.park[:0], p.unpark[:0]
	return nil
}
