package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/ingest"
)

// Events: storing a batch's events once each, by COPY or by statement;
// the fast path for messages whose contact is known already.

const (
	// sqlStoreKnown stores, in one statement (one round trip, one commit),
	// the messages whose contact the identities already decide: a single
	// known id, or a known user id whose anonymous id needs no joining
	// (it is the same contact, or another identified contact's: shared
	// devices). It returns the positions (1-based) of the messages it
	// could not place, and of the events it stored with their contacts.
	sqlStoreKnown = `
WITH m AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::timestamptz[])
        WITH ORDINALITY AS m(uk, ak, mid, kind, name, props, ctx, ts, ord)
), k AS MATERIALIZED (
    -- One index lookup an id (with the array's size unknown, a join
    -- could hash whole tables); anonymous ids locked as in
    -- sqlResolveAnonymous.
    SELECT m.*,
        CASE WHEN m.uk <> '' THEN (SELECT i.contact_id FROM identities i WHERE i.identity = m.uk) END AS uc,
        CASE WHEN m.ak <> '' THEN (SELECT i.contact_id FROM identities i WHERE i.identity = m.ak FOR SHARE) END AS ac
    FROM m
), r AS (
    SELECT k.ord, k.mid, k.kind, k.name, k.props, k.ctx, k.ts,
        CASE
            WHEN k.uk = '' THEN k.ac
            WHEN k.uc IS NULL THEN NULL
            WHEN k.ak = '' OR k.ac = k.uc THEN k.uc
            WHEN k.ac IS NOT NULL
                AND (SELECT c.user_id IS NOT NULL FROM contacts c WHERE c.id = k.ac) THEN k.uc
        END AS cid
    FROM k
), ins AS (
    INSERT INTO events (contact_id, message_id, kind, name, properties, context, occurred_at)
    SELECT cid, mid, kind, name, props, ctx, ts FROM r WHERE cid IS NOT NULL ORDER BY cid, mid
    ON CONFLICT (contact_id, message_id) DO NOTHING
    RETURNING contact_id, message_id
), early AS (
    ` + sqlEarlierSet + `(SELECT cid, min(ts) FROM r WHERE cid IS NOT NULL AND ts < statement_timestamp() - interval '1 minute' GROUP BY cid)` + sqlEarlierWhere + `
)
SELECT
    (SELECT count(*) FROM ins) AS stored,
    array_agg(r.ord) FILTER (WHERE r.cid IS NULL) AS unplaced,
    array_agg(r.ord) FILTER (WHERE ins.contact_id IS NOT NULL) AS fresh,
    array_agg(r.cid) FILTER (WHERE ins.contact_id IS NOT NULL) AS contacts
FROM r LEFT JOIN ins ON ins.contact_id = r.cid AND ins.message_id = r.mid`

	// sqlInsertEvents stores events once each and returns how many it
	// stored and the positions (1-based) of the new ones.
	sqlInsertEvents = `
WITH m AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::timestamptz[])
        WITH ORDINALITY AS m(cid, mid, kind, name, props, ctx, ts, ord)
), ins AS (
    INSERT INTO events (contact_id, message_id, kind, name, properties, context, occurred_at)
    SELECT cid, mid, kind, name, props, ctx, ts FROM m ORDER BY cid, mid
    ON CONFLICT (contact_id, message_id) DO NOTHING
    RETURNING contact_id, message_id
)
SELECT (SELECT count(*) FROM ins) AS stored, array_agg(m.ord) AS fresh
FROM m JOIN ins ON ins.contact_id = m.cid AND ins.message_id = m.mid`
)

// storeKnown stores the messages whose contact the identities already
// decide (a single known id, or a known user id whose anonymous id needs
// no joining: the same contact, or another identified contact's, as on
// shared devices) and returns what it stored and the positions of the
// messages left for ingestTx.
//
// It resolves the identities and COPYs the events in one transaction (the
// cheapest way into the table); when one of them is stored already (a
// client's retry), COPY fails and sqlStoreKnown stores them once each
// instead.
func (s *Store) storeKnown(ctx context.Context, msgs []ingest.Message) (ingest.Result, []int, error) {
	var (
		eligible = make([]int, 0, len(msgs))
		rest     []int
	)
	for i := range msgs {
		if msgs[i].Kind == ingest.KindIdentify {
			rest = append(rest, i)
		} else {
			eligible = append(eligible, i)
		}
	}
	if len(eligible) == 0 {
		return ingest.Result{}, rest, nil
	}
	var (
		res ingest.Result
		err error
	)
	// A few events take sqlStoreKnown's single round trip; more, COPY.
	if len(eligible) >= copyMin {
		for attempt := 0; attempt < 5; attempt++ {
			var retried []int
			res, retried, err = s.copyKnown(ctx, msgs, eligible)
			if err == nil {
				rest = append(rest, retried...)
				slices.Sort(rest)
				return res, rest, nil
			}
			if errors.Is(err, errStored) || !retryable(err) {
				break
			}
		}
		if !errors.Is(err, errStored) {
			return ingest.Result{}, nil, err
		}
	}
	res, retried, err := s.insertKnown(ctx, msgs, eligible)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	rest = append(rest, retried...)
	slices.Sort(rest)
	return res, rest, nil
}

// copyMin is the smallest batch storeKnown COPYs; smaller ones take
// sqlStoreKnown's single round trip.
const copyMin = 64

// errStored means COPY met an event stored already.
var errStored = errors.New("an event is stored already")

// copyKnown is storeKnown's COPY: it returns errStored if an event is
// stored already, having stored nothing.
func (s *Store) copyKnown(ctx context.Context, msgs []ingest.Message, eligible []int) (ingest.Result, []int, error) {
	var users, anons []string
	seen := make(map[string]struct{}, 2*len(eligible))
	// User ids this process has resolved before: only their contacts'
	// existence is checked (see userCache).
	var (
		hits  map[string]int64
		check []int64
	)
	if s.users != nil {
		hits = make(map[string]int64, len(eligible))
	}
	for _, i := range eligible {
		for j, k := range msgs[i].IdentityKeys() {
			if k == "" {
				continue
			}
			if _, ok := seen[k]; ok {
				continue
			}
			seen[k] = struct{}{}
			if j == 0 {
				if c, ok := s.users.get(k); ok {
					hits[k] = c
					check = append(check, c)
				} else {
					users = append(users, k)
				}
			} else {
				anons = append(anons, k)
			}
		}
	}
	sort.Strings(anons) // one lock order
	slices.Sort(check)
	check = slices.Compact(check)
	t, err := s.begin(ctx)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	defer t.close()
	known := make(map[string]ingest.Owner, len(seen))
	live, err := t.resolve(ctx, users, anons, check, known)
	if err != nil {
		return ingest.Result{}, nil, err
	}
	var learned []cached // user ids resolved here, cached once committed
	if s.users != nil {
		for _, k := range users {
			if info, ok := known[k]; ok {
				learned = append(learned, cached{k, info.Contact})
			}
		}
	}
	// A cached user whose contact is gone (erased, by any process) is
	// forgotten; its messages go to ingestTx, which looks it up afresh.
	var stale []string
	for k, c := range hits {
		if live[c] {
			known[k] = ingest.Owner{Contact: c, Identified: true}
		} else {
			stale = append(stale, k)
		}
	}
	s.users.drop(stale)
	// Placed as sqlStoreKnown's CASE places them.
	var (
		rest   []int
		placed = make([]int, 0, len(eligible))
		cids   = make([]int64, 0, len(eligible))
	)
	for _, i := range eligible {
		cid := ingest.Placed(msgs[i].IdentityKeys(), known)
		if cid == 0 {
			rest = append(rest, i)
			continue
		}
		placed, cids = append(placed, i), append(cids, cid)
	}
	// In (contact, messageId) order: locality in the primary key, and one
	// lock order for all writers. The same message twice in the batch is
	// stored once.
	order := make([]int, len(placed))
	for j := range order {
		order[j] = j
	}
	slices.SortFunc(order, func(x, y int) int {
		if cids[x] != cids[y] {
			return cmp.Compare(cids[x], cids[y])
		}
		if c := strings.Compare(msgs[placed[x]].MessageID, msgs[placed[y]].MessageID); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	keep := order[:0]
	for j, o := range order {
		if j > 0 {
			p := order[j-1]
			if cids[p] == cids[o] && msgs[placed[p]].MessageID == msgs[placed[o]].MessageID {
				continue
			}
		}
		keep = append(keep, o)
	}
	if len(keep) > 0 {
		src := eventSource(len(keep), func(j int) (*ingest.Message, int64) {
			o := keep[j]
			return &msgs[placed[o]], cids[o]
		})
		if err := t.copyFrom(ctx, src); err != nil {
			if uniqueViolation(err) {
				return ingest.Result{}, nil, errStored
			}
			return ingest.Result{}, nil, err
		}
	}
	err = t.run(ctx, true, func(*pgx.Batch) {}, func(pgx.BatchResults) error { return nil })
	if err != nil {
		return ingest.Result{}, nil, err
	}
	s.users.add(learned)
	fresh := make([]int, len(keep))
	fc := make([]int64, len(keep))
	for j, o := range keep {
		fresh[j], fc[j] = placed[o], cids[o]
	}
	return ingest.NewResult(msgs, fresh, fc, len(keep), len(placed)), rest, nil
}

// knownRow is what sqlStoreKnown returns.
type knownRow struct {
	Stored   int64   `db:"stored"`
	Unplaced []int64 `db:"unplaced"`
	Fresh    []int64 `db:"fresh"`
	Contacts []int64 `db:"contacts"`
}

// insertedRow is what sqlInsertEvents returns.
type insertedRow struct {
	Stored int64   `db:"stored"`
	Fresh  []int64 `db:"fresh"`
}

// insertKnown is storeKnown with sqlStoreKnown, for batches holding events
// stored already.
func (s *Store) insertKnown(ctx context.Context, msgs []ingest.Message, eligible []int) (ingest.Result, []int, error) {
	n := len(eligible)
	uks, aks := make([]string, n), make([]string, n)
	for j, i := range eligible {
		k := msgs[i].IdentityKeys()
		uks[j], aks[j] = k[0], k[1]
	}
	ev := newEventArrays(msgs, eligible)
	// One round trip and implicit transaction; a few messages' with the
	// generic plan (see genericBelow).
	b := &pgx.Batch{}
	generic := n < genericBelow
	if generic {
		b.Queue(sqlGenericPlansBatch)
	}
	b.Queue(sqlStoreKnown, uks, aks, ev.mids, ev.kinds, ev.names, ev.props, ev.ctxs, ev.times)
	br := s.db.SendBatch(ctx, b)
	var (
		r   knownRow
		err error
	)
	if generic {
		_, err = br.Exec()
	}
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			r, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[knownRow])
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ingest.Result{}, nil, err
	}
	var rest []int
	for _, o := range r.Unplaced {
		rest = append(rest, eligible[o-1])
	}
	idx := make([]int, len(r.Fresh))
	for j, o := range r.Fresh {
		idx[j] = eligible[o-1]
	}
	return ingest.NewResult(msgs, idx, r.Contacts, int(r.Stored), len(eligible)-len(r.Unplaced)), rest, nil
}

// eventArrays are events as the arrays of the statements that insert
// them (sqlStoreKnown, sqlInsertEvents).
type eventArrays struct {
	mids, kinds, names []string
	props, ctxs        []json.RawMessage
	times              []time.Time
}

// newEventArrays returns the arrays of msgs at positions at (all of them
// if at is nil).
func newEventArrays(msgs []ingest.Message, at []int) eventArrays {
	n := len(msgs)
	if at != nil {
		n = len(at)
	}
	c := eventArrays{
		mids: make([]string, n), kinds: make([]string, n), names: make([]string, n),
		props: make([]json.RawMessage, n), ctxs: make([]json.RawMessage, n), times: make([]time.Time, n),
	}
	for j := 0; j < n; j++ {
		i := j
		if at != nil {
			i = at[j]
		}
		m := &msgs[i]
		c.mids[j], c.kinds[j], c.names[j], c.props[j], c.times[j] = m.MessageID, m.Kind, m.Name, m.Properties, m.Timestamp
		if len(m.Context) > 0 {
			c.ctxs[j] = m.Context
		}
	}
	return c
}

// eventSource is COPY's source of n events: at(j) is the j-th event's
// message and contact.
func eventSource(n int, at func(j int) (*ingest.Message, int64)) pgx.CopyFromSource {
	row := make([]any, len(eventColumns))
	j := 0
	return pgx.CopyFromFunc(func() ([]any, error) {
		if j == n {
			return nil, nil
		}
		m, cid := at(j)
		row[0], row[1], row[2], row[3], row[4], row[6] = cid, m.MessageID, m.Kind, m.Name, m.Properties, m.Timestamp
		if len(m.Context) > 0 {
			row[5] = m.Context
		} else {
			row[5] = nil
		}
		j++
		return row, nil
	})
}

var eventColumns = []string{"contact_id", "message_id", "kind", "name", "properties", "context", "occurred_at"}

// copyEvents loads the events with COPY, in (contact, message) order, under
// a savepoint the caller set; if one is already stored (a re-import), it
// rolls back to the savepoint and inserts them once each instead, in the
// same order, fallbackRows at a time: fallback queues sqlInsertEvents for
// the messages at the positions it is given. It returns the events stored
// and the positions (1-based) of the new ones.
func (t *txn) copyEvents(ctx context.Context, msgs []ingest.Message, contactOf []int64, fallback func(b *pgx.Batch, at []int)) (int64, []int64, error) {
	order := make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if contactOf[a] != contactOf[b] {
			if contactOf[a] < contactOf[b] {
				return -1
			}
			return 1
		}
		if msgs[a].MessageID < msgs[b].MessageID {
			return -1
		}
		if msgs[a].MessageID > msgs[b].MessageID {
			return 1
		}
		return 0
	})
	// The same message twice in the chunk would stop COPY: go the slow way.
	dup := false
	for j := 1; j < len(order); j++ {
		a, b := order[j-1], order[j]
		if contactOf[a] == contactOf[b] && msgs[a].MessageID == msgs[b].MessageID {
			dup = true
			break
		}
	}
	if !dup {
		src := eventSource(len(order), func(j int) (*ingest.Message, int64) {
			return &msgs[order[j]], contactOf[order[j]]
		})
		err := t.copyFrom(ctx, src)
		if err == nil {
			fresh := make([]int64, len(msgs))
			for i := range fresh {
				fresh[i] = int64(i + 1)
			}
			return int64(len(msgs)), fresh, nil
		}
		if !uniqueViolation(err) {
			return 0, nil, err
		}
	}
	var (
		stored int64
		fresh  []int64
	)
	if !dup {
		// On its own: pgx cannot prepare the fallback in an aborted
		// transaction.
		err := t.run(ctx, false, func(b *pgx.Batch) { b.Queue("rollback to savepoint copy_events") },
			func(br pgx.BatchResults) error { _, err := br.Exec(); return err })
		if err != nil {
			return 0, nil, err
		}
	}
	for k := 0; k < len(order); k += fallbackRows {
		at := order[k:min(k+fallbackRows, len(order))]
		err := t.run(ctx, false, func(b *pgx.Batch) { fallback(b, at) }, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[insertedRow])
			if err != nil {
				return err
			}
			stored += r.Stored
			for _, o := range r.Fresh {
				fresh = append(fresh, int64(at[o-1]+1))
			}
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
	}
	return stored, fresh, nil
}

// fallbackRows is how many events a statement of copyEvents' fallback
// inserts: a chunk's events in one statement would take as much memory
// again as the chunk (its arrays, and pgx's encoding of them).
const fallbackRows = 10000
