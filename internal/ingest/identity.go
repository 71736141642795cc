package ingest

// Identity resolution: whom each message belongs to, decided from what
// is known of its identities. The store finds out whom the identities
// belong to now, and executes the plan (it creates the contacts, claims the
// identities, joins and merges as the plan says, and stores the events).

// IdentityKeys returns the message's user and anonymous identity keys, as
// the store keeps them ("u:" + userId, "a:" + anonymousId; "" if absent).
func (m *Message) IdentityKeys() [2]string {
	var k [2]string
	if m.UserID != "" {
		k[0] = UserKey(m.UserID)
	}
	if m.AnonymousID != "" {
		k[1] = "a:" + m.AnonymousID
	}
	return k
}

// UserKey is the identity key of a user id.
func UserKey(userID string) string { return "u:" + userID }

// IsUserKey reports whether an identity key is a user id's.
func IsUserKey(k string) bool { return len(k) > 2 && k[:2] == "u:" }

// IsAnonymousKey reports whether an identity key is an anonymous id's.
func IsAnonymousKey(k string) bool { return len(k) >= 2 && k[:2] == "a:" }

// Owner is whom an identity belongs to: its contact, and whether that
// contact has a user id (is identified).
type Owner struct {
	Contact    int64
	Identified bool
}

// Placed returns the contact a message goes to when its identities alone
// decide it, with nothing to create, join or merge: its anonymous id's
// contact when it has no user id; its user id's contact when it has no
// anonymous id, or the same contact's, or an identified contact's (a
// shared device stays with its first user). 0 when they do not decide it:
// the message needs Decide.
func Placed(keys [2]string, known map[string]Owner) int64 {
	u, uok := known[keys[0]]
	a, aok := known[keys[1]]
	switch {
	case keys[0] == "":
		if aok {
			return a.Contact
		}
	case !uok:
	case keys[1] == "" || aok && a.Contact == u.Contact:
		return u.Contact
	case aok && a.Identified:
		return u.Contact
	}
	return 0
}

// Plan is how a batch maps to contacts, decided from the identities known.
// New contacts have placeholder ids (negative: -1 for Created[0], -2 for
// Created[1], …) until the store draws their ids.
type Plan struct {
	ContactOf []int64 // per message; negative: a new contact's placeholder
	Created   []NewContact
	NewIdents map[string]int64 // identity → contact (or placeholder)
	Identify  map[int64]string // existing anonymous contact → user id it now has
	Merges    []Merge
	merged    map[int64]int64 // contact or placeholder → the one it was folded into
}

// NewContact is a contact a batch creates.
type NewContact struct {
	UserID, AnonymousID string
	// Dead: folded into another contact of the batch (an anonymous
	// visitor created earlier in the batch who turned out to be a user),
	// never created.
	Dead bool
}

// Merge moves everything of an anonymous contact (From) into the
// identified contact it turned out to be (To).
type Merge struct{ From, To int64 }

// Placeholder is the placeholder id of p.Created[i].
func Placeholder(i int) int64 { return int64(-i - 1) }

// Decide maps each message to its contact, in order, given whom the
// batch's identities belong to now (known, which it updates as the batch
// creates, joins and merges).
func Decide(msgs []Message, known map[string]Owner) *Plan {
	p := &Plan{
		ContactOf: make([]int64, len(msgs)),
		NewIdents: map[string]int64{},
		Identify:  map[int64]string{},
		merged:    map[int64]int64{},
	}
	lookup := func(id string) (Owner, bool) {
		info, ok := known[id]
		if ok {
			if to, m := p.merged[info.Contact]; m {
				info.Contact = to
			}
		}
		return info, ok
	}
	for i := range msgs {
		m := &msgs[i]
		keys := m.IdentityKeys()
		u, a := keys[0], keys[1]
		ui, uok := lookup(u)
		ai, aok := lookup(a)
		switch {
		case u != "" && uok:
			p.ContactOf[i] = ui.Contact
			if a != "" && !aok {
				known[a] = Owner{ui.Contact, true}
				p.NewIdents[a] = ui.Contact
			} else if a != "" && ai.Contact != ui.Contact && !ai.Identified {
				// The anonymous visitor turned out to be this user.
				if ai.Contact > 0 {
					p.Merges = append(p.Merges, Merge{ai.Contact, ui.Contact})
				} else {
					// Created earlier in this batch: fold it in instead.
					p.Created[-ai.Contact-1].Dead = true
					p.NewIdents[a] = ui.Contact
				}
				p.merged[ai.Contact] = ui.Contact
				known[a] = Owner{ui.Contact, true}
			}
		case u != "" && aok && !ai.Identified:
			// An anonymous contact becomes identified.
			p.ContactOf[i] = ai.Contact
			known[u] = Owner{ai.Contact, true}
			p.NewIdents[u] = ai.Contact
			if ai.Contact > 0 {
				p.Identify[ai.Contact] = m.UserID
			} else {
				p.Created[-ai.Contact-1].UserID = m.UserID
			}
			for k, v := range known {
				if v.Contact == ai.Contact {
					known[k] = Owner{v.Contact, true}
				}
			}
		case u != "":
			// A new user (an anonymous id already taken by another user
			// stays with that user: shared devices).
			id := Placeholder(len(p.Created))
			p.Created = append(p.Created, NewContact{UserID: m.UserID})
			known[u] = Owner{id, true}
			p.NewIdents[u] = id
			if a != "" && !aok {
				p.Created[len(p.Created)-1].AnonymousID = m.AnonymousID
				known[a] = Owner{id, true}
				p.NewIdents[a] = id
			}
			p.ContactOf[i] = id
		case aok:
			p.ContactOf[i] = ai.Contact
		default:
			id := Placeholder(len(p.Created))
			p.Created = append(p.Created, NewContact{AnonymousID: m.AnonymousID})
			known[a] = Owner{id, false}
			p.NewIdents[a] = id
			p.ContactOf[i] = id
		}
	}
	return p
}

// Follow returns the contact (or placeholder) id ends up as after the
// batch's folds and merges (an event of an anonymous contact merged later
// in the batch goes to the contact it is merged into).
func (p *Plan) Follow(id int64) int64 {
	for {
		to, ok := p.merged[id]
		if !ok {
			return id
		}
		id = to
	}
}

// Live is the number of contacts the plan creates (those not folded into
// another).
func (p *Plan) Live() int {
	n := 0
	for _, c := range p.Created {
		if !c.Dead {
			n++
		}
	}
	return n
}
