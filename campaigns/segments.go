package campaigns

import (
	"context"
	"fmt"
	"time"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Membership says that a contact is in a segment.
type Membership struct {
	Segment   string
	ContactID int64
}

// SegmentStore is implemented by stores that keep who is in each segment:
// the runner records the members among every batch it sees (events and
// sweeps), so lists, sizes and exports read them.
type SegmentStore interface {
	// SetSegmentMembers makes members the segment memberships of the
	// contacts ids (the others of theirs end). With page, ids are a page
	// of a pass over every contact: the memberships of contacts in their
	// range that are not listed (merged away, erased) end too.
	SetSegmentMembers(ctx context.Context, ids []int64, members []Membership, at time.Time, page bool) error
}

// segmentSet is a journey's segments, compiled.
type segmentSet struct {
	names []string
	progs map[string]*rule.Program
}

// compileSegments compiles segs; errors name the segment.
func compileSegments(segs []Segment) (segmentSet, error) {
	set := segmentSet{progs: make(map[string]*rule.Program, len(segs))}
	for _, s := range segs {
		p, err := rule.Compile(s.When, rule.CompileOptions{})
		if err != nil {
			return set, fmt.Errorf("segment %q: %w", s.Name, err)
		}
		set.names = append(set.names, s.Name)
		set.progs[s.Name] = p
	}
	return set, nil
}

// programs are the segments' conditions, in journey order.
func (s segmentSet) programs() []*rule.Program {
	out := make([]*rule.Program, len(s.names))
	for i, n := range s.names {
		out[i] = s.progs[n]
	}
	return out
}

// has reports whether f is in the segment called name; a condition that
// cannot be evaluated on f's data, or a segment that does not exist, says
// no.
func (s segmentSet) has(name string, f *rule.Facts) bool {
	p, ok := s.progs[name]
	if !ok {
		return false
	}
	in, err := p.Eval(f)
	return err == nil && in
}

// members lists the batch's segment memberships.
func (s segmentSet) members(batch []lifecycle.ContactFacts) []Membership {
	var out []Membership
	for _, name := range s.names {
		for i := range batch {
			if s.has(name, &batch[i].Facts) {
				out = append(out, Membership{Segment: name, ContactID: batch[i].ID})
			}
		}
	}
	return out
}

// recordSegments records the batch's segment memberships, when the store
// keeps them and the journey has segments (applying a journey ends the
// memberships of the segments it removes).
func (r *Runner) recordSegments(ctx context.Context, set segmentSet, batch []lifecycle.ContactFacts, at time.Time, sweep bool) error {
	ss, ok := r.store.(SegmentStore)
	if !ok || len(batch) == 0 || len(set.names) == 0 {
		return nil
	}
	ids := make([]int64, len(batch))
	for i := range batch {
		ids[i] = batch[i].ID
	}
	if err := ss.SetSegmentMembers(ctx, ids, set.members(batch), at, sweep); err != nil {
		return fmt.Errorf("recording segment members: %w", err)
	}
	return nil
}

// SegmentSize is a segment's size on a day.
type SegmentSize struct {
	Day     time.Time `db:"day" json:"day"`
	Members int64     `db:"members" json:"members"`
}

// SegmentSummary is a segment with its size now and its daily sizes (the
// trend), oldest first.
type SegmentSummary struct {
	Name      string        `json:"name"`
	Condition string        `json:"when"`
	Members   int64         `json:"members"`
	Trend     []SegmentSize `json:"trend"`
}

// SegmentMember is a contact in a segment.
type SegmentMember struct {
	ID    int64     `db:"id" json:"id"`
	Email string    `db:"email" json:"email"`
	Stage string    `db:"stage" json:"stage"`
	Since time.Time `db:"since" json:"since"`
}
