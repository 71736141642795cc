package ingest

import (
	"slices"
	"sort"
)

// NewResult reports a stored batch's new events: fresh are their positions
// in msgs (a message repeated within the batch may appear more than
// once), cids their contacts, stored the number of events stored, placed
// the number of messages that were tried.
func NewResult(msgs []Message, fresh []int, cids []int64, stored, placed int) Result {
	res := Result{Stored: stored, Duplicates: placed - stored}
	if stored != len(fresh) {
		// The same message twice in one batch: report it once.
		type key struct {
			c int64
			m string
		}
		seen := make(map[key]bool, len(fresh))
		var f2 []int
		var c2 []int64
		for j, i := range fresh {
			k := key{cids[j], msgs[i].MessageID}
			if !seen[k] {
				seen[k] = true
				f2, c2 = append(f2, i), append(c2, cids[j])
			}
		}
		fresh, cids = f2, c2
	}
	// In message order, so that names come in the order sent.
	order := make([]int, len(fresh))
	for j := range order {
		order[j] = j
	}
	sort.Slice(order, func(x, y int) bool { return fresh[order[x]] < fresh[order[y]] })
	res.Latest = make(map[int64]*Message, len(fresh))
	res.Names = make(map[int64][]string, len(fresh))
	for _, j := range order {
		m, c := &msgs[fresh[j]], cids[j]
		if l := res.Latest[c]; l == nil {
			res.Contacts = append(res.Contacts, c)
			res.Latest[c] = m
		} else if !m.Timestamp.Before(l.Timestamp) {
			res.Latest[c] = m
		}
		res.Names[c] = append(res.Names[c], m.Name)
	}
	slices.Sort(res.Contacts)
	return res
}

// Combine adds b (stored after a) to a; merged maps contacts b merged away
// to the contacts they were merged into.
func Combine(a, b Result, merged map[int64]int64) Result {
	out := Result{
		Stored:     a.Stored + b.Stored,
		Duplicates: a.Duplicates + b.Duplicates,
		Latest:     make(map[int64]*Message, len(a.Latest)+len(b.Latest)),
		Names:      make(map[int64][]string, len(a.Names)+len(b.Names)),
	}
	add := func(r Result) {
		for _, c0 := range r.Contacts {
			c := c0
			for {
				to, ok := merged[c]
				if !ok {
					break
				}
				c = to
			}
			if _, ok := out.Names[c]; !ok {
				out.Names[c] = nil
				out.Contacts = append(out.Contacts, c)
			}
			if l, m := out.Latest[c], r.Latest[c0]; m != nil && (l == nil || !m.Timestamp.Before(l.Timestamp)) {
				out.Latest[c] = m
			}
			out.Names[c] = append(out.Names[c], r.Names[c0]...)
		}
	}
	add(a)
	add(b)
	slices.Sort(out.Contacts)
	out.Refused = append(a.Refused, b.Refused...)
	return out
}
