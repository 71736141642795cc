package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/ingest"
)

// Ingest implements ingest.Store: it resolves each message's contact
// (creating contacts for new ids, joining an anonymous id to a user id,
// merging an anonymous contact into the identified one, as ingest.Decide
// plans it), stores the events once each, and merges identify traits.
//
// Messages whose contact is already known (the steady state: returning
// users) are stored by one statement in its own implicit transaction; the
// others (new ids, joins, identify traits) in one transaction after it.
// Either part may commit without the other when the database fails midway;
// a client retrying the whole request then stores only what is missing.
func (s *Store) Ingest(ctx context.Context, msgs []ingest.Message) (ingest.Result, error) {
	res, rest, err := s.storeKnown(ctx, msgs)
	if err != nil {
		return ingest.Result{}, translate(err, "storing events")
	}
	if len(rest) == 0 {
		return res, nil
	}
	slow := make([]ingest.Message, len(rest))
	for i, j := range rest {
		slow[i] = msgs[j]
	}
	var (
		sres   ingest.Result
		merged map[int64]int64
	)
	err = s.ingestTx(ctx, "storing events", slow, ingestOptions{users: s.users}, func(r ingest.Result, m map[int64]int64) { sres, merged = r, m })
	if err != nil {
		return ingest.Result{}, err
	}
	for i := range sres.Refused {
		sres.Refused[i].Index = rest[sres.Refused[i].Index]
	}
	return ingest.Combine(res, sres, merged), nil
}

// ingestOptions change how ingestIn loads: imports COPY the events and
// keep the user ids they have seen.
type ingestOptions struct {
	copy bool
	// contactsOnly: create the contacts and identities the messages need,
	// join and merge as they say, and commit, storing no event.
	contactsOnly bool
	cache        *identityCache
	// tally: the result has counts and refusals only (no contacts, names
	// or latest events: an import's, which fires no triggers).
	tally   bool
	learned *[]cached  // user ids resolved, for the cache
	users   *userCache // learns the user ids resolved (never read here)
	// since: the contacts and the instants they exist from, as written
	// here, for the cache once committed.
	since *sinceList
}

// sinceList are contacts with the instant each exists from.
type sinceList struct {
	ids    []int64
	firsts []time.Time
}

// ingestTx stores msgs in one transaction, starting again when it loses a
// race to create an identity (it waits for the winner to commit, so the
// next attempt finds it) or deadlocks. done gets the result and the
// contacts merged away.
func (s *Store) ingestTx(ctx context.Context, doing string, msgs []ingest.Message, o ingestOptions, done func(ingest.Result, map[int64]int64)) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		var t *txn
		t, err = s.begin(ctx)
		if err != nil {
			break
		}
		t.generic = len(msgs) < genericBelow
		var (
			res    ingest.Result
			merged map[int64]int64
		)
		var (
			learned []cached
			since   sinceList
		)
		if o.cache != nil || o.users != nil {
			o.learned = &learned
		}
		if o.cache != nil {
			o.since = &since
		}
		res, merged, err = ingestIn(ctx, t, msgs, o)
		t.close()
		if err == nil {
			if o.cache != nil {
				o.cache.add(learned)
				o.cache.existsFrom(since.ids, since.firsts)
			}
			o.users.add(learned)
			done(res, merged)
			return nil
		}
		if !errors.Is(err, errLost) && !retryable(err) {
			break
		}
	}
	return translate(err, doing)
}

// ingestIn stores msgs in the transaction t: it returns the result and
// the contacts merged away (into the contacts they were merged into).
func ingestIn(ctx context.Context, t *txn, msgs []ingest.Message, o ingestOptions) (ingest.Result, map[int64]int64, error) {
	// 1. The identities the batch mentions, and whom they belong to now.
	known, err := t.resolveBatch(ctx, msgs, o.cache)
	if err != nil {
		return ingest.Result{}, nil, err
	}

	// 2. Decide each message's contact in order.
	p := ingest.Decide(msgs, known)

	// 3. Claim the new identities, drawing ids for the new contacts.
	drawn, err := t.claim(ctx, p)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	toReal := func(id int64) int64 {
		id = p.Follow(id)
		if id < 0 {
			return drawn[id]
		}
		return id
	}
	contactOf := p.ContactOf
	for i := range contactOf {
		contactOf[i] = toReal(contactOf[i])
	}
	merged := map[int64]int64{}
	for i := range p.Merges {
		p.Merges[i].To = toReal(p.Merges[i].To)
		merged[p.Merges[i].From] = p.Merges[i].To
	}

	// 4. In one round trip: the new contacts, identified and merged
	// contacts, the events (once each); and COMMIT if no traits follow.
	hasIdentify := slices.ContainsFunc(msgs, func(m ingest.Message) bool { return m.Kind == ingest.KindIdentify })
	stored, fresh, err := t.write(ctx, msgs, p, contactOf, drawn, o, hasIdentify)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	if o.learned != nil {
		// Cached by the caller once committed.
		for k, info := range known {
			if ingest.IsUserKey(k) {
				*o.learned = append(*o.learned, cached{k, toReal(info.Contact)})
			}
		}
	}
	if o.contactsOnly {
		return ingest.Result{}, merged, nil
	}
	n := len(msgs)
	idx := make([]int, len(fresh))
	cids := make([]int64, len(fresh))
	for j, o := range fresh {
		idx[j] = int(o - 1)
		cids[j] = contactOf[o-1]
	}
	result := func(idx []int, cids []int64, stored, placed int) ingest.Result {
		if o.tally {
			return ingest.Result{Stored: stored, Duplicates: placed - stored}
		}
		res := ingest.NewResult(msgs, idx, cids, stored, placed)
		for _, mg := range p.Merges {
			if _, ok := res.Names[mg.To]; !ok {
				res.Names[mg.To] = nil
				res.Contacts = append(res.Contacts, mg.To)
			}
		}
		slices.Sort(res.Contacts)
		return res
	}
	res := result(idx, cids, int(stored), n)
	if !hasIdentify {
		return res, merged, nil
	}

	// 5. Traits of new identify calls, merged in message order per
	// contact; then COMMIT, in the same round trip.
	patches, identifies, err := ingest.TraitPatches(msgs, idx, contactOf)
	if err != nil {
		return res, nil, err
	}
	refusedContacts, err := t.mergeTraits(ctx, msgs, patches, identifies, contactOf)
	if err != nil {
		return res, nil, err
	}
	if len(refusedContacts) == 0 {
		return res, merged, nil
	}
	// The refused contacts' identify calls stored nothing: report them
	// refused, and the rest as stored.
	refusedContact := make(map[int64]bool, len(refusedContacts))
	for _, c := range refusedContacts {
		refusedContact[c] = true
	}
	refused := map[int]bool{}
	for _, i := range identifies {
		if refusedContact[contactOf[i]] {
			refused[i] = true
			res.Refused = append(res.Refused, ingest.FieldError{Index: i, Field: "traits",
				Msg: fmt.Sprintf("the contact's traits would be over %d KB or %d keys: refused, the stored traits stay as they were", ingest.MaxTraitBytes>>10, ingest.MaxTraitKeys)})
		}
	}
	// A stored event is one (contact, messageId).
	type eventKey struct {
		contact int64
		message string
	}
	var (
		idx2  []int
		cids2 []int64
		taken = map[eventKey]bool{}
	)
	for j, i := range idx {
		if !refused[i] {
			idx2, cids2 = append(idx2, i), append(cids2, cids[j])
		} else {
			taken[eventKey{cids[j], msgs[i].MessageID}] = true
		}
	}
	refusals := res.Refused
	res = result(idx2, cids2, int(stored)-len(taken), n-len(refused))
	res.Refused = refusals
	return res, merged, nil
}

// write queues, in one round trip, what the plan p does to contacts and
// the events (once each, contactOf: each message's contact); an import
// COPYs the events after it. The transaction commits unless traits
// follow (hasIdentify). It returns how many events were stored and the
// positions (1-based) of the new ones.
func (t *txn) write(ctx context.Context, msgs []ingest.Message, p *ingest.Plan, contactOf []int64, drawn map[int64]int64, o ingestOptions, hasIdentify bool) (int64, []int64, error) {
	var (
		stored int64
		fresh  []int64
	)
	// sqlInsertEvents' statement for the messages at positions at (all
	// if nil), with the events as its arrays: built only when queued (a
	// COPY needs them only if it meets an event stored already).
	insertEvents := func(b *pgx.Batch, at []int) {
		cids := contactOf
		if at != nil {
			cids = make([]int64, len(at))
			for j, i := range at {
				cids[j] = contactOf[i]
			}
		}
		ev := newEventArrays(msgs, at)
		b.Queue(sqlInsertEvents, cids, ev.mids, ev.kinds, ev.names, ev.props, ev.ctxs, ev.times)
	}
	var readContacts func(pgx.BatchResults) error
	err := t.run(ctx, !hasIdentify && !o.copy || o.contactsOnly, func(b *pgx.Batch) {
		readContacts = queueContacts(b, msgs, p, contactOf, drawn, o)
		switch {
		case o.contactsOnly:
		case o.copy:
			b.Queue("savepoint copy_events")
		default:
			insertEvents(b, nil)
		}
	}, func(br pgx.BatchResults) error {
		if err := readContacts(br); err != nil {
			return err
		}
		switch {
		case o.contactsOnly:
			return nil
		case o.copy:
			_, err := br.Exec()
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[insertedRow])
		stored, fresh = r.Stored, r.Fresh
		return err
	})
	if err == nil && o.copy && !o.contactsOnly {
		stored, fresh, err = t.copyEvents(ctx, msgs, contactOf, insertEvents)
		if err == nil && !hasIdentify {
			err = t.run(ctx, true, func(*pgx.Batch) {}, func(pgx.BatchResults) error { return nil })
		}
	}
	return stored, fresh, err
}

// mergeTraits merges the identify calls' patches into their contacts
// (identifies: the positions of those calls, contactOf: each message's
// contact) and commits, in one round trip. It returns the contacts whose
// traits would have gone over the limits: refused, left as they were,
// their identify events taken out again.
func (t *txn) mergeTraits(ctx context.Context, msgs []ingest.Message, patches map[int64]ingest.TraitPatch, identifies []int, contactOf []int64) ([]int64, error) {
	var refused []int64
	err := t.run(ctx, true, func(b *pgx.Batch) {
		if len(patches) == 0 {
			return
		}
		ids := make([]int64, 0, len(patches))
		for id := range patches {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		traits := make([]json.RawMessage, len(ids))
		ems := make([]string, len(ids))
		uids := make([]string, len(ids))
		for i, id := range ids {
			pt := patches[id]
			traits[i], ems[i], uids[i] = pt.Traits, pt.Email, pt.UserID
		}
		icids := make([]int64, len(identifies))
		imids := make([]string, len(identifies))
		for j, i := range identifies {
			icids[j], imids[j] = contactOf[i], msgs[i].MessageID
		}
		b.Queue(sqlMergeTraits, ids, traits, ems, uids, ingest.MaxTraitBytes, ingest.MaxTraitKeys, icids, imids)
	}, func(br pgx.BatchResults) error {
		if len(patches) == 0 {
			return nil
		}
		return br.QueryRow().Scan(&refused)
	})
	return refused, err
}
