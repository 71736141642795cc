package ingest

import (
	"maps"
	"slices"
	"testing"
)

// Decide maps each message to its contact from whom its identities belong
// to: existing contacts by id, new ones by placeholder (-1, -2, …); a
// message of an anonymous visitor who turns out later in the batch to be
// a user goes to the user (Follow).
func TestDecide(t *testing.T) {
	t.Parallel()
	msg := func(user, anon string) Message { return Message{UserID: user, AnonymousID: anon} }
	tests := []struct {
		name      string
		known     map[string]Owner
		msgs      []Message
		contactOf []int64
		created   []NewContact
		identify  map[int64]string
		merges    []Merge
	}{
		{name: "a new anonymous visitor", msgs: []Message{msg("", "a1")},
			contactOf: []int64{-1}, created: []NewContact{{AnonymousID: "a1"}}},
		{name: "a known user on a new device", known: map[string]Owner{"u:u1": {7, true}}, msgs: []Message{msg("u1", "a1")},
			contactOf: []int64{7}},
		{name: "an anonymous visitor identifies", known: map[string]Owner{"a:a1": {8, false}}, msgs: []Message{msg("u1", "a1")},
			contactOf: []int64{8}, identify: map[int64]string{8: "u1"}},
		{name: "an anonymous visitor turns out to be a known user", known: map[string]Owner{"u:u1": {7, true}, "a:a1": {8, false}},
			msgs: []Message{msg("", "a1"), msg("u1", "a1"), msg("", "a1")}, contactOf: []int64{7, 7, 7}, merges: []Merge{{8, 7}}},
		{name: "a visitor new in the batch joins a known user", known: map[string]Owner{"u:u1": {7, true}},
			msgs: []Message{msg("", "a1"), msg("u1", "a1")}, contactOf: []int64{7, 7}, created: []NewContact{{AnonymousID: "a1", Dead: true}}},
		{name: "a shared device stays with its first user", known: map[string]Owner{"a:a1": {7, true}},
			msgs: []Message{msg("u2", "a1")}, contactOf: []int64{-1}, created: []NewContact{{UserID: "u2"}}},
		{name: "a new user and a new visitor", msgs: []Message{msg("u1", "a1"), msg("", "a2")},
			contactOf: []int64{-1, -2}, created: []NewContact{{UserID: "u1", AnonymousID: "a1"}, {AnonymousID: "a2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			known := maps.Clone(tc.known)
			if known == nil {
				known = map[string]Owner{}
			}
			p := Decide(tc.msgs, known)
			for i := range p.ContactOf {
				p.ContactOf[i] = p.Follow(p.ContactOf[i])
			}
			if !slices.Equal(p.ContactOf, tc.contactOf) {
				t.Errorf("contacts %v, want %v", p.ContactOf, tc.contactOf)
			}
			if !slices.Equal(p.Created, tc.created) {
				t.Errorf("created %+v, want %+v", p.Created, tc.created)
			}
			if len(p.Identify) != len(tc.identify) || (len(tc.identify) > 0 && !maps.Equal(p.Identify, tc.identify)) {
				t.Errorf("identified %v, want %v", p.Identify, tc.identify)
			}
			if !slices.Equal(p.Merges, tc.merges) {
				t.Errorf("merges %v, want %v", p.Merges, tc.merges)
			}
		})
	}
}

// Placed places a message only when its identities alone decide its
// contact.
func TestPlaced(t *testing.T) {
	t.Parallel()
	known := map[string]Owner{"u:u1": {7, true}, "a:a1": {7, true}, "a:a2": {8, false}, "a:a3": {9, true}}
	for _, tc := range []struct {
		user, anon string
		want       int64
	}{
		{"", "a2", 8}, {"u1", "", 7}, {"u1", "a1", 7}, {"u1", "a3", 7},
		{"u1", "a2", 0}, // an anonymous visitor to merge
		{"u1", "a9", 0}, // a new device to record
		{"u9", "", 0},   // a new user
		{"", "a9", 0},   // a new visitor
	} {
		m := Message{UserID: tc.user, AnonymousID: tc.anon}
		if got := Placed(m.IdentityKeys(), known); got != tc.want {
			t.Errorf("user %q anonymous %q: placed on %d, want %d", tc.user, tc.anon, got, tc.want)
		}
	}
}
