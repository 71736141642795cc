package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// API keys and dashboard sessions.

// ErrBadKey is returned for a key that is malformed, unknown or revoked.
var ErrBadKey = errors.New("invalid or revoked API key")

// ErrDuplicateName is returned when a key name is already in use.
var ErrDuplicateName = errors.New("name already used by a key in use")

// APIKey is a stored key (never its secret).
type APIKey struct {
	ID         int64
	Name       string
	Prefix     string
	ReadOnly   bool
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

const keyScheme = "wmk_"

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CreateAPIKey creates a key named name and returns it in plain text, the
// only time it is ever available: only its SHA-256 is stored.
func (s *Store) CreateAPIKey(ctx context.Context, name string) (string, error) {
	return s.CreateAPIKeyWith(ctx, name, false)
}

// CreateAPIKeyWith is CreateAPIKey; a read-only key may only read (GET).
func (s *Store) CreateAPIKeyWith(ctx context.Context, name string, readOnly bool) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", errors.New("creating an API key: name: must not be empty")
	}
	if len(name) > 100 {
		return "", errors.New("creating an API key: name: longer than 100 characters")
	}
	prefix := randomHex(6)
	key := keyScheme + prefix + "_" + randomHex(24)
	// In its own (sub)transaction, so a duplicate name leaves a caller's
	// transaction usable.
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (name, prefix, hash, read_only) VALUES ($1, $2, $3, $4)`,
			name, prefix, hashSecret(key), readOnly)
		return err
	})
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" {
		return "", fmt.Errorf("creating API key %q: %w", name, ErrDuplicateName)
	}
	if err != nil {
		return "", translate(err, "creating an API key")
	}
	return key, nil
}

// keyPrefix extracts the lookup prefix of a key, or "".
func keyPrefix(key string) string {
	rest, ok := strings.CutPrefix(key, keyScheme)
	if !ok {
		return ""
	}
	prefix, secret, ok := strings.Cut(rest, "_")
	if !ok || len(prefix) != 12 || len(secret) != 48 {
		return ""
	}
	return prefix
}

// Authenticate returns the key a plain-text key is, if it is known and not
// revoked; the hash is compared in constant time. last_used_at is updated
// at most once a minute.
func (s *Store) Authenticate(ctx context.Context, key string) (APIKey, error) {
	prefix := keyPrefix(key)
	if prefix == "" {
		return APIKey{}, ErrBadKey
	}
	var (
		k    APIKey
		hash []byte
	)
	err := s.db.QueryRow(ctx, `SELECT id, name, prefix, read_only, created_at, last_used_at, revoked_at, hash
		FROM api_keys WHERE prefix = $1`, prefix).Scan(&k.ID, &k.Name, &k.Prefix, &k.ReadOnly, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		// Compare anyway, so an unknown prefix costs the same time.
		subtle.ConstantTimeCompare(hashSecret(key), make([]byte, sha256.Size))
		return APIKey{}, ErrBadKey
	}
	if err != nil {
		return APIKey{}, translate(err, "checking an API key")
	}
	if subtle.ConstantTimeCompare(hashSecret(key), hash) != 1 || k.RevokedAt != nil {
		return APIKey{}, ErrBadKey
	}
	if k.LastUsedAt == nil || time.Since(*k.LastUsedAt) > time.Minute {
		_, _ = s.db.Exec(ctx, `UPDATE api_keys SET last_used_at = now() WHERE id = $1`, k.ID)
	}
	return k, nil
}

// APIKeys lists the keys, newest first, revoked ones included.
func (s *Store) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.Query(ctx, `SELECT id, name, prefix, read_only, created_at, last_used_at, revoked_at
		FROM api_keys ORDER BY id DESC`)
	if err != nil {
		return nil, translate(err, "listing API keys")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[APIKey])
	return out, translate(err, "listing API keys")
}

// RevokeAPIKey revokes the key in use with this name, or this id (a number)
// or prefix, and ends its dashboard sessions. ErrNotFound if none matches.
func (s *Store) RevokeAPIKey(ctx context.Context, ref string) (APIKey, error) {
	var k APIKey
	err := s.inTx(ctx, "revoking an API key", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE api_keys SET revoked_at = now()
			WHERE revoked_at IS NULL AND (name = $1 OR prefix = $1 OR ($1 ~ '^[0-9]{1,18}$' AND id::text = $1))
			RETURNING id, name, prefix, read_only, created_at, last_used_at, revoked_at`, ref).
			Scan(&k.ID, &k.Name, &k.Prefix, &k.ReadOnly, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE key_id = $1`, k.ID)
		return err
	})
	return k, err
}

// Session is a logged-in dashboard session.
type Session struct {
	Key  APIKey
	CSRF string
}

// CreateSession opens a dashboard session for a key and returns the cookie
// token (only its hash is stored).
func (s *Store) CreateSession(ctx context.Context, keyID int64, ttl time.Duration) (token string, sess Session, err error) {
	token = randomHex(32)
	csrf := randomHex(32)
	_, err = s.db.Exec(ctx, `INSERT INTO sessions (token_hash, key_id, csrf, expires_at) VALUES ($1, $2, $3, now() + $4::interval)`,
		hashSecret(token), keyID, csrf, fmt.Sprintf("%d seconds", int(ttl.Seconds())))
	if err != nil {
		return "", Session{}, translate(err, "opening a session")
	}
	// Old sessions go when new ones come.
	_, _ = s.db.Exec(ctx, `DELETE FROM sessions WHERE expires_at < now()`)
	return token, Session{CSRF: csrf}, nil
}

// SessionByToken returns the live session a cookie token names; ErrBadKey
// if it is unknown, expired, or its key was revoked.
func (s *Store) SessionByToken(ctx context.Context, token string) (Session, error) {
	if len(token) != 64 {
		return Session{}, ErrBadKey
	}
	var ss Session
	err := s.db.QueryRow(ctx, `SELECT k.id, k.name, k.prefix, k.read_only, k.created_at, k.last_used_at, k.revoked_at, s.csrf
		FROM sessions s JOIN api_keys k ON k.id = s.key_id
		WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL`, hashSecret(token)).
		Scan(&ss.Key.ID, &ss.Key.Name, &ss.Key.Prefix, &ss.Key.ReadOnly, &ss.Key.CreatedAt, &ss.Key.LastUsedAt, &ss.Key.RevokedAt, &ss.CSRF)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrBadKey
	}
	return ss, translate(err, "reading a session")
}

// EndSession deletes a session (logging out).
func (s *Store) EndSession(ctx context.Context, token string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM sessions WHERE token_hash = $1`, hashSecret(token))
	return translate(err, "ending a session")
}

// The dashboard's daily rollups.

const statsLock = 0x77656273 // "webs": one rollup refresh at a time

// sqlRefresh recomputes every rollup for the days from $1 (a UTC
// midnight) on; $2 is the start of the window offer conversions are
// recomputed over (30 days after a draw). Each statement reads recent rows
// through an index range (transitions_at, contacts_created, sends_sent_at,
// events_engagement, enrolments_converted, offer_draws_at).
var sqlRefresh = []string{
	`DELETE FROM stats_moves WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_moves (day, from_stage, to_stage, rule, n)
SELECT (at AT TIME ZONE 'UTC')::date, from_stage, to_stage, rule, count(*)
FROM transitions WHERE at >= $1 GROUP BY 1, 2, 3, 4`,

	`DELETE FROM stats_entries WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_entries (day, stage, n)
SELECT day, stage, sum(n) FROM (
    SELECT (at AT TIME ZONE 'UTC')::date AS day, to_stage AS stage, count(*) AS n FROM transitions WHERE at >= $1 GROUP BY 1, 2
    UNION ALL
    SELECT (created_at AT TIME ZONE 'UTC')::date, 'awareness', count(*) FROM contacts WHERE created_at >= $1 AND merged_into IS NULL GROUP BY 1
) x GROUP BY 1, 2`,

	`DELETE FROM stats_stays WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_stays (day, stage, bucket, n)
SELECT day, stage, bucket, count(*) FROM (
    SELECT (t.at AT TIME ZONE 'UTC')::date AS day, t.from_stage AS stage,
           floor(2 * ln(1 + greatest(extract(epoch FROM t.at - coalesce(p.at, c.created_at, t.at)) / 3600, 0)) / ln(2))::smallint AS bucket
    FROM transitions t
    LEFT JOIN LATERAL (SELECT p.at FROM transitions p WHERE p.contact_id = t.contact_id AND p.seq < t.seq ORDER BY p.seq DESC LIMIT 1) p ON true
    LEFT JOIN contacts c ON c.id = t.contact_id
    WHERE t.at >= $1
) x GROUP BY 1, 2, 3`,

	`DELETE FROM stats_email WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_email (day, sent, opened, clicked, unsubscribed)
SELECT day, sum(sent), sum(opened), sum(clicked), sum(unsubscribed) FROM (
    SELECT (sent_at AT TIME ZONE 'UTC')::date AS day, count(*) AS sent, 0 AS opened, 0 AS clicked, 0 AS unsubscribed
    FROM sends WHERE status = 'sent' AND sent_at >= $1 GROUP BY 1
    UNION ALL
    SELECT (occurred_at AT TIME ZONE 'UTC')::date, 0,
           count(DISTINCT (contact_id, properties->>'send_id')) FILTER (WHERE name = 'email_opened'),
           count(DISTINCT (contact_id, properties->>'send_id')) FILTER (WHERE name = 'email_clicked'),
           count(*) FILTER (WHERE name = 'unsubscribed')
    FROM events WHERE name IN ('email_opened', 'email_clicked', 'unsubscribed') AND occurred_at >= $1 GROUP BY 1
) x GROUP BY 1`,

	`DELETE FROM stats_steps WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_steps (day, sequence, step, template, tone, sent, opened, clicked, converted)
SELECT day, sequence, step, template, tone, sum(sent), sum(opened), sum(clicked), sum(converted) FROM (
    SELECT (sent_at AT TIME ZONE 'UTC')::date AS day, coalesce(sequence, 'offer: ' || offer, '') AS sequence, step, template,
           coalesce(tone, '') AS tone, count(*) AS sent, 0 AS opened, 0 AS clicked, 0 AS converted
    FROM sends WHERE status = 'sent' AND sent_at >= $1 GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, coalesce(s.sequence, 'offer: ' || s.offer, ''), s.step, s.template, coalesce(s.tone, ''), 0,
           count(DISTINCT s.id) FILTER (WHERE e.name = 'email_opened'),
           count(DISTINCT s.id) FILTER (WHERE e.name = 'email_clicked'), 0
    FROM events e
    JOIN sends s ON s.contact_id = e.contact_id
               AND s.id = CASE WHEN e.properties->>'send_id' ~ '^[0-9]{1,18}$' THEN (e.properties->>'send_id')::bigint END
    WHERE e.name IN ('email_opened', 'email_clicked', 'unsubscribed') AND e.occurred_at >= $1
      AND e.name IN ('email_opened', 'email_clicked')
    GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT (en.ended_at AT TIME ZONE 'UTC')::date, en.sequence, l.step, l.template, coalesce(l.tone, ''), 0, 0, 0, count(*)
    FROM enrolments en
    JOIN LATERAL (SELECT s.step, s.template, s.tone FROM sends s
                  WHERE s.contact_id = en.contact_id AND s.enrolment_id = en.id AND s.status = 'sent'
                  ORDER BY s.step DESC LIMIT 1) l ON true
    WHERE en.status = 'converted' AND en.ended_at >= $1
    GROUP BY 1, 2, 3, 4, 5
) x GROUP BY 1, 2, 3, 4, 5`,

	`DELETE FROM stats_offers WHERE day >= $2::timestamptz AT TIME ZONE 'UTC' AND $1::timestamptz IS NOT NULL`,
	`INSERT INTO stats_offers (day, offer, drawn, eligible, converted)
SELECT (d.at AT TIME ZONE 'UTC')::date, d.offer, d.drawn, count(*),
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM events e WHERE e.contact_id = d.contact_id AND e.name = 'order_completed'
             AND e.occurred_at > d.at AND e.occurred_at <= d.at + interval '30 days'))
FROM offer_draws d WHERE d.at >= $2 AND $1::timestamptz IS NOT NULL GROUP BY 1, 2, 3`,

	`INSERT INTO stats_state (refreshed_at, stages)
SELECT $3, coalesce(jsonb_object_agg(stage, n), '{}') FROM (
    SELECT stage, count(*) AS n FROM contacts WHERE merged_into IS NULL GROUP BY stage) x
WHERE $1::timestamptz IS NOT NULL AND $2::timestamptz IS NOT NULL
ON CONFLICT (id) DO UPDATE SET refreshed_at = excluded.refreshed_at, stages = excluded.stages`,
}

// RefreshStats brings the dashboard's daily rollups up to now: the days
// since the last refresh (and the one before it, for rows committed late)
// are recomputed, offer conversions over the last 31 days; with full, or
// the first time, everything. It reports false if another refresh was
// running (it then does nothing). Rows dated before the recomputed days
// that arrive later (an import of old history, a backtest) are counted
// after a full refresh.
func (s *Store) RefreshStats(ctx context.Context, now time.Time, full bool) (bool, error) {
	ran := false
	err := s.inTx(ctx, "refreshing the dashboard's rollups", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(statsLock)).Scan(&ran); err != nil || !ran {
			return err
		}
		var last *time.Time
		if err := tx.QueryRow(ctx, `SELECT refreshed_at FROM stats_state`).Scan(&last); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		from := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC) // everything
		if last != nil && !full {
			from = last.UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
		}
		offersFrom := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -31)
		if from.Before(offersFrom) {
			offersFrom = from
		}
		args := []any{from, offersFrom, now}
		for i, q := range sqlRefresh {
			n := 1
			for strings.Contains(q, fmt.Sprintf("$%d", n+1)) {
				n++
			}
			if _, err := tx.Exec(ctx, q, args[:n]...); err != nil {
				return fmt.Errorf("rollup statement %d: %w", i+1, err)
			}
		}
		return nil
	})
	return ran, err
}

// StatsState is when the rollups were refreshed and the contacts per stage
// then.
type StatsState struct {
	RefreshedAt time.Time
	Stages      map[string]int64
}

// StatsStateNow returns the last refresh's state; ErrNotFound before the
// first refresh.
func (s *Store) StatsStateNow(ctx context.Context) (StatsState, error) {
	var st StatsState
	err := s.db.QueryRow(ctx, `SELECT refreshed_at, stages FROM stats_state`).Scan(&st.RefreshedAt, &st.Stages)
	return st, translate(err, "reading the rollups' state")
}

// Flow is a number of stage moves between two stages (by one rule, when
// Rule is set).
type Flow struct {
	From string `json:"from"`
	To   string `json:"to"`
	Rule string `json:"rule,omitempty"`
	N    int64  `json:"moves"`
}

// EmailDay is one day's email figures.
type EmailDay struct {
	Day          time.Time `json:"day"`
	Sent         int64     `json:"sent"`
	Opened       int64     `json:"opened"`
	Clicked      int64     `json:"clicked"`
	Unsubscribed int64     `json:"unsubscribed"`
}

// Period is a range of days [From, To) in UTC.
type Period struct{ From, To time.Time }

// Flows returns the moves in the period by pair of stages and rule.
func (s *Store) Flows(ctx context.Context, p Period) ([]Flow, error) {
	rows, err := s.db.Query(ctx, `SELECT from_stage, to_stage, rule, sum(n)::bigint FROM stats_moves
		WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3`, p.From, p.To)
	if err != nil {
		return nil, translate(err, "reading stage moves")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Flow])
	return out, translate(err, "reading stage moves")
}

// EmailDays returns the email figures of each day in the period that has
// any.
func (s *Store) EmailDays(ctx context.Context, p Period) ([]EmailDay, error) {
	rows, err := s.db.Query(ctx, `SELECT day::timestamptz, sent, opened, clicked, unsubscribed FROM stats_email
		WHERE day >= $1::date AND day < $2::date ORDER BY day`, p.From, p.To)
	if err != nil {
		return nil, translate(err, "reading email figures")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[EmailDay])
	return out, translate(err, "reading email figures")
}

// StageFigures are what journey health is computed from, for one period.
type StageFigures struct {
	Entries map[string]int64         // entries into each stage
	Stays   map[string]map[int]int64 // per stage, stays ended by bucket
	Moves   []Flow                   // by pair of stages and rule
}

// HealthFigures returns the period's entries, stays and moves.
func (s *Store) HealthFigures(ctx context.Context, p Period) (StageFigures, error) {
	f := StageFigures{Entries: map[string]int64{}, Stays: map[string]map[int]int64{}}
	rows, err := s.db.Query(ctx, `SELECT stage, sum(n)::bigint FROM stats_entries WHERE day >= $1::date AND day < $2::date GROUP BY 1`, p.From, p.To)
	if err != nil {
		return f, translate(err, "reading stage entries")
	}
	var (
		stage string
		n     int64
		b     int
	)
	if _, err := pgx.ForEachRow(rows, []any{&stage, &n}, func() error { f.Entries[stage] = n; return nil }); err != nil {
		return f, translate(err, "reading stage entries")
	}
	rows, err = s.db.Query(ctx, `SELECT stage, bucket, sum(n)::bigint FROM stats_stays WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2`, p.From, p.To)
	if err != nil {
		return f, translate(err, "reading time in stage")
	}
	if _, err := pgx.ForEachRow(rows, []any{&stage, &b, &n}, func() error {
		if f.Stays[stage] == nil {
			f.Stays[stage] = map[int]int64{}
		}
		f.Stays[stage][b] = n
		return nil
	}); err != nil {
		return f, translate(err, "reading time in stage")
	}
	f.Moves, err = s.Flows(ctx, p)
	return f, err
}

// StepFigures are one sequence step's figures in one tone and template.
// Step counts from 1, as the journey file and apply's errors do.
type StepFigures struct {
	Sequence  string `json:"sequence"`
	Step      int    `json:"step"`
	Template  string `json:"template"`
	Tone      string `json:"tone"`
	Sent      int64  `json:"sent"`
	Opened    int64  `json:"opened"`
	Clicked   int64  `json:"clicked"`
	Converted int64  `json:"converted"`
}

// StepStats returns the period's figures per sequence, step, template and
// tone.
func (s *Store) StepStats(ctx context.Context, p Period) ([]StepFigures, error) {
	rows, err := s.db.Query(ctx, `SELECT sequence, step + 1, template, tone, sum(sent)::bigint, sum(opened)::bigint, sum(clicked)::bigint, sum(converted)::bigint
		FROM stats_steps WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4, 3`, p.From, p.To)
	if err != nil {
		return nil, translate(err, "reading sequence figures")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[StepFigures])
	return out, translate(err, "reading sequence figures")
}

// OfferFigures are an offer's draws in a period, drawn or not.
type OfferFigures struct {
	Offer     string
	Drawn     bool
	Eligible  int64
	Converted int64
}

// OfferStats returns the period's draws per offer, drawn and not drawn.
func (s *Store) OfferStats(ctx context.Context, p Period) ([]OfferFigures, error) {
	rows, err := s.db.Query(ctx, `SELECT offer, drawn, sum(eligible)::bigint, sum(converted)::bigint
		FROM stats_offers WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2 ORDER BY 1, 2 DESC`, p.From, p.To)
	if err != nil {
		return nil, translate(err, "reading offer figures")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[OfferFigures])
	return out, translate(err, "reading offer figures")
}

// Contacts, for the API and the dashboard.

// Contact is a contact as stored.
type Contact struct {
	ID             int64          `json:"id"`
	UserID         string         `json:"user_id,omitempty"`
	AnonymousID    string         `json:"anonymous_id,omitempty"`
	Email          string         `json:"email,omitempty"`
	Traits         map[string]any `json:"traits"`
	Status         string         `json:"status"`
	Stage          string         `json:"stage"`
	StageEnteredAt time.Time      `json:"stage_entered_at"`
	CreatedAt      time.Time      `json:"created_at"`
	UpdatedAt      time.Time      `json:"updated_at"`
}

const contactColumns = `id, coalesce(user_id, ''), coalesce(anonymous_id, ''), coalesce(email, ''), traits, status, stage, stage_entered_at, created_at, updated_at`

// ContactByID returns a contact that has not been merged into another;
// ErrNotFound otherwise.
func (s *Store) ContactByID(ctx context.Context, id int64) (Contact, error) {
	rows, err := s.db.Query(ctx, `SELECT `+contactColumns+` FROM contacts WHERE id = $1 AND merged_into IS NULL`, id)
	if err != nil {
		return Contact{}, translate(err, "reading a contact")
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[Contact])
	return c, translate(err, "reading a contact")
}

// ContactQuery selects a page of contacts. Sort is one of the allow-listed
// ContactSorts; After is the cursor a previous page returned.
type ContactQuery struct {
	Email string
	Stage string
	Sort  string
	After string
	Limit int
}

// ContactSorts are the orders contacts can be listed in.
var ContactSorts = []string{"id", "-id", "created_at", "-created_at"}

// ErrBadCursor is returned for a cursor that was not made by a listing in
// the same order.
var ErrBadCursor = errors.New("not a cursor from this listing")

// Contacts returns a page of contacts and the cursor of the next page (""
// at the end). Every order is served by an index (keyset pagination, no
// OFFSET), so deep pages cost what the first does.
func (s *Store) Contacts(ctx context.Context, q ContactQuery) ([]Contact, string, error) {
	var order, keyset string
	switch q.Sort {
	case "", "id":
		order, keyset = "id", "id > $3::bigint"
	case "-id":
		order, keyset = "id DESC", "id < $3::bigint"
	case "created_at":
		order, keyset = "created_at, id", "(created_at, id) > ($5::timestamptz, $3::bigint)"
	case "-created_at":
		order, keyset = "created_at DESC, id DESC", "(created_at, id) < ($5::timestamptz, $3::bigint)"
	default:
		return nil, "", fmt.Errorf("sort %q: %w", q.Sort, ErrBadCursor)
	}
	var (
		afterID *int64
		afterAt *time.Time
	)
	if q.After != "" {
		id, at, err := parseCursor(q.After)
		if err != nil {
			return nil, "", err
		}
		afterID, afterAt = &id, &at
	}
	if q.Limit <= 0 || q.Limit > 500 {
		q.Limit = 50
	}
	// A filter (or cursor) that is not set is a constant condition, not an
	// OR beside the column's: a generic plan of an OR could not use the
	// email, stage or keyset index (a full scan per search, deep pages
	// walking from the first).
	emailCond, stageCond := `$1::text = ''`, `$2::text = ''`
	if q.Email != "" {
		emailCond = `email = lower($1)`
	}
	if q.Stage != "" {
		stageCond = `stage = $2`
	}
	if afterID == nil {
		keyset = `$3::bigint IS NULL`
	}
	sql := `SELECT ` + contactColumns + ` FROM contacts WHERE merged_into IS NULL
		AND ` + emailCond + ` AND ` + stageCond + `
		AND ` + keyset + `
		ORDER BY ` + order + ` LIMIT $4`
	args := []any{q.Email, q.Stage, afterID, q.Limit + 1}
	if strings.Contains(keyset, "$5") {
		args = append(args, afterAt)
	}
	rows, err := s.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", translate(err, "listing contacts")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Contact])
	if err != nil {
		return nil, "", translate(err, "listing contacts")
	}
	next := ""
	if len(out) > q.Limit {
		out = out[:q.Limit]
		last := out[len(out)-1]
		next = fmt.Sprintf("%d.%d", last.ID, last.CreatedAt.UnixMicro())
	}
	return out, next, nil
}

func parseCursor(c string) (int64, time.Time, error) {
	a, b, ok := strings.Cut(c, ".")
	id, err1 := strconv.ParseInt(a, 10, 64)
	us, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, time.Time{}, ErrBadCursor
	}
	return id, time.UnixMicro(us), nil
}

// TimelineEvent is one event of a contact.
type TimelineEvent struct {
	Name       string         `json:"name"`
	Kind       string         `json:"kind"`
	Properties map[string]any `json:"properties"`
	At         time.Time      `json:"at"`
}

// TimelineSend is one email of a contact, with its opens and clicks.
type TimelineSend struct {
	ID            int64      `json:"id"`
	Sequence      string     `json:"sequence,omitempty"`
	Step          int        `json:"step,omitempty"` // from 1; 0 for an email that is not a sequence's
	Offer         string     `json:"offer,omitempty"`
	OfferCode     string     `json:"offer_code,omitempty"`
	Template      string     `json:"template"`
	Version       int        `json:"template_version,omitempty"`
	Status        string     `json:"status"`
	Tone          string     `json:"tone,omitempty"`
	ToneReason    string     `json:"tone_reason,omitempty"`
	DueAt         time.Time  `json:"due_at"`
	SentAt        *time.Time `json:"sent_at,omitempty"`
	DelayedReason string     `json:"delayed_reason,omitempty"`
	SMTPResponse  string     `json:"smtp_response,omitempty"`
	Opens         int64      `json:"opens"`
	Clicks        int64      `json:"clicks"`
}

// TimelineDraw is one offer draw of a contact.
type TimelineDraw struct {
	Offer     string     `json:"offer"`
	Drawn     bool       `json:"drawn"`
	Code      string     `json:"code,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	At        time.Time  `json:"at"`
}

// TimelineEnrolment is one enrolment of a contact in a sequence.
type TimelineEnrolment struct {
	ID         int64      `json:"id"`
	Sequence   string     `json:"sequence"`
	Version    int        `json:"version"`
	Status     string     `json:"status"`
	Reason     string     `json:"reason,omitempty"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
}

// Timeline is everything that happened to one contact.
type Timeline struct {
	Events      []TimelineEvent     `json:"events"`
	EventsTotal int64               `json:"events_total"`
	Moves       []Transition        `json:"moves"`
	Sends       []TimelineSend      `json:"sends"`
	Draws       []TimelineDraw      `json:"offers"`
	Enrolments  []TimelineEnrolment `json:"enrolments"`
}

// ContactTimeline returns a contact's moves, emails (with opens and
// clicks), offer draws, enrolments and its latest maxEvents events; every
// query is by contact_id.
func (s *Store) ContactTimeline(ctx context.Context, id int64, maxEvents int) (Timeline, error) {
	var t Timeline
	var err error
	if t.Moves, err = s.History(ctx, id); err != nil {
		return t, err
	}
	rows, err := s.db.Query(ctx, `SELECT name, kind, properties, occurred_at FROM events WHERE contact_id = $1
		ORDER BY occurred_at DESC LIMIT $2`, id, maxEvents)
	if err != nil {
		return t, translate(err, "reading a contact's events")
	}
	if t.Events, err = pgx.CollectRows(rows, pgx.RowToStructByPos[TimelineEvent]); err != nil {
		return t, translate(err, "reading a contact's events")
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE contact_id = $1`, id).Scan(&t.EventsTotal); err != nil {
		return t, translate(err, "counting a contact's events")
	}
	rows, err = s.db.Query(ctx, `
SELECT s.id, coalesce(s.sequence, ''), CASE WHEN s.sequence IS NULL THEN 0 ELSE s.step + 1 END, coalesce(s.offer, ''), coalesce(s.offer_code, ''), s.template, coalesce(s.template_version, 0),
       s.status, coalesce(s.tone, ''), coalesce(s.tone_reason, ''), s.due_at, s.sent_at, coalesce(s.delayed_reason, ''), coalesce(s.smtp_response, ''),
       coalesce(e.opens, 0), coalesce(e.clicks, 0)
FROM sends s
LEFT JOIN (
    SELECT properties->>'send_id' AS send_id, count(*) FILTER (WHERE name = 'email_opened') AS opens,
           count(*) FILTER (WHERE name = 'email_clicked') AS clicks
    FROM events WHERE contact_id = $1 AND name IN ('email_opened', 'email_clicked') GROUP BY 1
) e ON e.send_id = s.id::text
WHERE s.contact_id = $1 ORDER BY s.due_at, s.id`, id)
	if err != nil {
		return t, translate(err, "reading a contact's emails")
	}
	if t.Sends, err = pgx.CollectRows(rows, pgx.RowToStructByPos[TimelineSend]); err != nil {
		return t, translate(err, "reading a contact's emails")
	}
	rows, err = s.db.Query(ctx, `SELECT offer, drawn, coalesce(code, ''), expires_at, at FROM offer_draws WHERE contact_id = $1 ORDER BY at`, id)
	if err != nil {
		return t, translate(err, "reading a contact's offers")
	}
	if t.Draws, err = pgx.CollectRows(rows, pgx.RowToStructByPos[TimelineDraw]); err != nil {
		return t, translate(err, "reading a contact's offers")
	}
	rows, err = s.db.Query(ctx, `SELECT id, sequence, version, status, coalesce(reason, ''), enrolled_at, ended_at FROM enrolments WHERE contact_id = $1 ORDER BY enrolled_at, id`, id)
	if err != nil {
		return t, translate(err, "reading a contact's enrolments")
	}
	t.Enrolments, err = pgx.CollectRows(rows, pgx.RowToStructByPos[TimelineEnrolment])
	return t, translate(err, "reading a contact's enrolments")
}

// Journey content, for the API and the rule editor.

// RuleInfo is a stored rule with its place and time.
type RuleInfo struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Position  int       `json:"position"` // in the order rules are tried, from 1
	From      []string  `json:"from"`
	To        string    `json:"to"`
	Condition string    `json:"when"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RuleInfos returns the rules in evaluation order.
func (s *Store) RuleInfos(ctx context.Context) ([]RuleInfo, error) {
	rows, err := s.db.Query(ctx, `SELECT name, version, position + 1, from_stages, to_stage, condition, updated_at FROM rules ORDER BY position, name`)
	if err != nil {
		return nil, translate(err, "reading rules")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[RuleInfo])
	return out, translate(err, "reading rules")
}

// Named is a stored definition (template, sequence, offer) with its
// version.
type Named struct {
	Name       string          `json:"name"`
	Version    int             `json:"version"`
	Definition json.RawMessage `json:"definition"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

// TemplateList returns the templates, by name.
func (s *Store) TemplateList(ctx context.Context) ([]Named, error) {
	return s.named(ctx, `SELECT name, version, content, updated_at FROM templates ORDER BY name`, "reading templates")
}

// SequenceList returns the sequences in journey order.
func (s *Store) SequenceList(ctx context.Context) ([]Named, error) {
	return s.named(ctx, `SELECT name, version, definition, updated_at FROM sequences ORDER BY position, name`, "reading sequences")
}

// OfferList returns the offers, by name.
func (s *Store) OfferList(ctx context.Context) ([]Named, error) {
	return s.named(ctx, `SELECT name, 0, definition, updated_at FROM offers ORDER BY name`, "reading offers")
}

func (s *Store) named(ctx context.Context, sql, doing string) ([]Named, error) {
	rows, err := s.db.Query(ctx, sql)
	if err != nil {
		return nil, translate(err, doing)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Named])
	return out, translate(err, doing)
}

// Suppression is an address never sent to.
type Suppression struct {
	Email     string    `json:"email"`
	Reason    string    `json:"reason"`
	Detail    string    `json:"detail,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// SuppressionSorts are the orders suppressions can be listed in.
var SuppressionSorts = []string{"email", "-created_at"}

// Suppressions returns a page of the suppression list and the next page's
// cursor ("" at the end).
func (s *Store) Suppressions(ctx context.Context, sort, after string, limit int) ([]Suppression, string, error) {
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	var sql string
	var args []any
	switch sort {
	case "", "-created_at":
		var at *time.Time
		email := ""
		if after != "" {
			us, e, ok := strings.Cut(after, ".")
			n, err := strconv.ParseInt(us, 10, 64)
			if !ok || err != nil {
				return nil, "", ErrBadCursor
			}
			t := time.UnixMicro(n)
			at, email = &t, e
		}
		sql = `SELECT email, reason, coalesce(detail, ''), created_at FROM suppressions
			WHERE $1::timestamptz IS NULL OR (created_at, email) < ($1, $2) ORDER BY created_at DESC, email DESC LIMIT $3`
		args = []any{at, email, limit + 1}
	case "email":
		sql = `SELECT email, reason, coalesce(detail, ''), created_at FROM suppressions WHERE email > $1 ORDER BY email LIMIT $2`
		args = []any{after, limit + 1}
	default:
		return nil, "", fmt.Errorf("sort %q: %w", sort, ErrBadCursor)
	}
	rows, err := s.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", translate(err, "listing suppressions")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Suppression])
	if err != nil {
		return nil, "", translate(err, "listing suppressions")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[len(out)-1]
		if sort == "email" {
			next = last.Email
		} else {
			next = fmt.Sprintf("%d.%s", last.CreatedAt.UnixMicro(), last.Email)
		}
	}
	return out, next, nil
}

// Unsuppress removes a manual suppression; other reasons (unsubscribed,
// bounces, complaints, erasure) are not removed this way. It reports
// whether one was removed.
func (s *Store) Unsuppress(ctx context.Context, email string) (bool, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM suppressions WHERE email = lower($1) AND reason = 'manual'`, email)
	if err != nil {
		return false, translate(err, "removing a suppression")
	}
	return tag.RowsAffected() == 1, nil
}
