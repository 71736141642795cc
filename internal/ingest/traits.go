package ingest

import (
	"encoding/json"
	"fmt"
)

// TraitPatch is what a batch's identify calls set on one contact: their
// traits merged in message order (a later call's value of a trait wins),
// and the email and user id the last of them gave. The store merges
// Traits into the contact's stored traits.
type TraitPatch struct {
	Traits        json.RawMessage
	Email, UserID string
}

// TraitPatches returns, by contact, the patches of the identify messages
// among those stored (fresh, positions in msgs; contactOf[i] is message
// i's contact), and the positions of those identify messages, in order.
// An identify whose traits are not an object patches nothing; a
// contact's patch is its one identify call's traits as sent (most
// contacts of a chunk, and all of a contacts file's), or several calls'
// merged.
func TraitPatches(msgs []Message, fresh []int, contactOf []int64) (map[int64]TraitPatch, []int, error) {
	isFresh := make([]bool, len(msgs))
	for _, i := range fresh {
		isFresh[i] = true
	}
	type patch struct {
		traits      json.RawMessage
		merged      map[string]json.RawMessage // several calls: later wins
		email, user string
	}
	patches := map[int64]*patch{}
	var identifies []int
	for i := range msgs {
		m := &msgs[i]
		if !isFresh[i] || m.Kind != KindIdentify {
			continue
		}
		identifies = append(identifies, i)
		c := contactOf[i]
		pt := patches[c]
		switch {
		case pt == nil:
			tr := m.Traits
			if string(tr) == "null" {
				tr = json.RawMessage("{}")
			}
			if len(tr) == 0 || tr[0] != '{' || !json.Valid(tr) {
				continue
			}
			pt = &patch{traits: tr}
			patches[c] = pt
		default:
			var tr map[string]json.RawMessage
			if err := json.Unmarshal(m.Traits, &tr); err != nil {
				continue
			}
			if pt.merged == nil {
				pt.merged = map[string]json.RawMessage{}
				if err := json.Unmarshal(pt.traits, &pt.merged); err != nil {
					return nil, nil, fmt.Errorf("merging traits: %w", err)
				}
			}
			for k, v := range tr {
				pt.merged[k] = v
			}
		}
		if m.Email != "" {
			pt.email = m.Email
		}
		if m.UserID != "" {
			pt.user = m.UserID
		}
	}
	out := make(map[int64]TraitPatch, len(patches))
	for c, pt := range patches {
		p := TraitPatch{Traits: pt.traits, Email: pt.email, UserID: pt.user}
		if pt.merged != nil {
			p.Traits, _ = json.Marshal(pt.merged)
		}
		out[c] = p
	}
	return out, identifies, nil
}
