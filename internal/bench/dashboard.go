package bench

// The dashboard benchmark's data and its HTTP measurement: on top of the
// sweep benchmark's contacts and events (or a copy of its database), a
// journey's history as the product would have written it over two years —
// stage moves, enrolments, emails with their opens and clicks, offer draws
// and unsubscribes — generated per contact with a seeded random walk and
// loaded with COPY; then every dashboard page and the main /api/v1
// endpoints requested through the real handler over real HTTP.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// DashboardDatabaseName is the dashboard benchmark's database by default.
const DashboardDatabaseName = "waymark_bench_dash"

// DashboardSequences are the sequences, steps and templates of
// examples/journey.yaml the generated history uses; the journey must have
// been applied first.
var DashboardSequences = map[string][]string{
	"welcome":       {"welcome", "best-of-blog"},
	"cart-reminder": {"cart-reminder", "cart-last-call"},
	"post-purchase": {"first-purchase-thanks", "review-request"},
	"advocacy":      {"refer-a-friend"},
	"win-back":      {"we-miss-you"},
}

// DashData counts what LoadDashboardData wrote.
type DashData struct {
	Contacts, Moved, Transitions, Enrolments, Sends, Sent, Opens, Clicks, Draws, Unsubscribed int64
	Elapsed                                                                                   time.Duration
}

func (d DashData) String() string {
	return fmt.Sprintf("%d contacts (%d moved): %d stage moves, %d enrolments, %d emails (%d sent), %d opens, %d clicks, %d offer draws, %d unsubscribed, in %.1fs",
		d.Contacts, d.Moved, d.Transitions, d.Enrolments, d.Sends, d.Sent, d.Opens, d.Clicks, d.Draws, d.Unsubscribed, d.Elapsed.Seconds())
}

// dashRule is a stored rule the walk can take.
type dashRule struct {
	name string
	from []string
	to   string
	obs  string // what it saw, as JSON
}

// dashContact is what the walk starts from.
type dashContact struct {
	id      int64
	created int64 // unix seconds
	plan    string
	email   string
}

// Rows the simulation of one contact produces, by table.
const (
	tMoves = iota
	tEnrol
	tSends
	tEvents
	tDraws
	tSupp
	tStage
	nTables
)

// dashSim simulates contacts one at a time, in id order, numbering
// enrolments and sends from 1 in that order.
type dashSim struct {
	now    int64
	rules  map[string][]dashRule // by from stage
	enrol  int64                 // last enrolment id
	send   int64                 // last send id
	rows   [nTables][][]any
	counts DashData
}

var stageOrder = map[string]int{"awareness": 0, "consideration": 1, "decision": 2, "retention": 3, "advocacy": 4}

// How likely a contact in each stage is to stay there for good.
var stayProb = map[string]float64{"awareness": 0.45, "consideration": 0.4, "decision": 0.4, "retention": 0.45, "advocacy": 0.55}

func ts(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

// contact simulates one contact, appending its rows to s.rows.
func (s *dashSim) contact(c dashContact) {
	for i := range s.rows {
		s.rows[i] = s.rows[i][:0]
	}
	r := rand.New(rand.NewPCG(uint64(c.id), 0xda5b))
	s.counts.Contacts++
	// The walk: gaps of about a month between moves.
	type move struct {
		rule     dashRule
		at       int64
		from, to string
	}
	var moves []move
	stage, at := "awareness", c.created
	for len(moves) < 12 {
		if r.Float64() < stayProb[stage] || len(s.rules[stage]) == 0 {
			break
		}
		at += int64(r.ExpFloat64() * 30 * 86400)
		if at > s.now {
			break
		}
		ru := s.rules[stage][r.IntN(len(s.rules[stage]))]
		moves = append(moves, move{ru, at, stage, ru.to})
		stage = ru.to
	}
	trigger := func() string {
		if r.IntN(3) == 0 {
			return "sweep"
		}
		return "event"
	}
	for _, m := range moves {
		s.rows[tMoves] = append(s.rows[tMoves], []any{c.id, m.from, m.to, m.rule.name, 1, m.rule.obs, trigger(), ts(m.at)})
	}
	if len(moves) > 0 {
		s.counts.Moved++
		last := moves[len(moves)-1]
		s.rows[tStage] = append(s.rows[tStage], []any{c.id, last.to, ts(last.at)})
	}
	s.counts.Transitions += int64(len(moves))

	tone := func(seq string) (string, string) {
		switch {
		case r.IntN(25) == 0:
			return "empathetic", `tone rule 1 (empathetic): count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")`
		case c.plan == "business":
			return "formal", `tone rule 2 (formal): traits.plan == "business"`
		case seq == "advocacy":
			return "celebratory", `tone rule 3 (celebratory): stage == "advocacy" && days_in_stage < 14`
		}
		return "friendly", "tone rule 4 (friendly): default"
	}
	// email adds a send of an enrolment (or an offer's, with enrol 0) due
	// at due, with its opens and clicks.
	email := func(enrol int64, seq string, step int, template string, due int64, offer, code string, expires *time.Time, skip bool) {
		s.send++
		id := s.send
		s.counts.Sends++
		status := "sent"
		var sentAt *time.Time
		var msgID, resp any
		switch {
		case due > s.now:
			status = "queued"
		case skip:
			status = "skipped"
		case r.IntN(100) == 0:
			status = "suppressed"
		default:
			t := ts(due + int64(r.IntN(600)))
			sentAt = &t
			msgID = fmt.Sprintf("<%d.%d@waymark.bench>", c.id, id)
			resp = "250 2.0.0 Ok: queued"
			s.counts.Sent++
		}
		tn, reason := tone(seq)
		var enrolID, seqv, off, offCode any
		if enrol > 0 {
			enrolID, seqv = enrol, seq
		}
		if offer != "" {
			off, offCode = offer, code
			if code == "" {
				offCode = nil
			}
		}
		var exp any
		if expires != nil {
			exp = *expires
		}
		var rcpt any
		var toneV, reasonV, ver any
		if status != "queued" {
			rcpt, toneV, reasonV, ver = c.email, tn, reason, 1
		}
		s.rows[tSends] = append(s.rows[tSends], []any{id, c.id, enrolID, seqv, step, off, offCode, exp, template, status, ts(due),
			ver, toneV, reasonV, rcpt, msgID, resp, min(1, boolInt(sentAt != nil)), sentAt, ts(due), ts(due)})
		if sentAt == nil {
			return
		}
		props := `{"send_id":` + strconv.FormatInt(id, 10) + `,"template":"` + template + `"}`
		if r.Float64() < 0.35 {
			opens := 1 + r.IntN(3)
			for k := 0; k < opens; k++ {
				t := sentAt.Add(time.Duration(r.ExpFloat64() * float64(6*time.Hour)))
				if t.Unix() > s.now {
					continue
				}
				s.rows[tEvents] = append(s.rows[tEvents], []any{c.id, "dash-o-" + strconv.FormatInt(id, 36) + "-" + strconv.Itoa(k), "internal", "email_opened", props, t, t})
				s.counts.Opens++
			}
			if r.Float64() < 0.25 {
				t := sentAt.Add(time.Duration(r.ExpFloat64() * float64(8*time.Hour)))
				if t.Unix() <= s.now {
					s.rows[tEvents] = append(s.rows[tEvents], []any{c.id, "dash-c-" + strconv.FormatInt(id, 36), "internal", "email_clicked", props, t, t})
					s.counts.Clicks++
				}
			}
		}
	}
	// enrolment adds an enrolment and its steps: step k is due at
	// start+after[k]; it ends at end (the first later move, or a goal).
	// The sequences the contact is active in (at most one enrolment of
	// each at a time: a trigger while one is active enrols no one).
	active := map[string]bool{}
	enrolment := func(seq string, start int64, after []int64, end int64, endStatus, reason string, skip func(step int) bool) {
		if active[seq] {
			return
		}
		s.enrol++
		id := s.enrol
		s.counts.Enrolments++
		status, endedAt := "active", any(nil)
		steps := DashboardSequences[seq]
		sent := 0
		for k, tpl := range steps {
			due := start + after[k]
			if end > 0 && due >= end {
				break
			}
			email(id, seq, k, tpl, due, "", "", nil, skip != nil && skip(k))
			sent++
			if due > s.now {
				break
			}
		}
		lastDue := start + after[len(steps)-1]
		switch {
		case end > 0 && end <= s.now && (sent < len(steps) || endStatus == "converted" && end-lastDue < 30*86400):
			// Left (or reached the goal) before the last step, or reached
			// the goal soon after it.
			status, endedAt = endStatus, ts(end)
		case sent == len(steps) && lastDue <= s.now:
			status, endedAt = "completed", ts(lastDue)
		}
		var why any
		if status == "exited" || status == "converted" {
			why = reason
		}
		active[seq] = status == "active"
		s.rows[tEnrol] = append(s.rows[tEnrol], []any{id, c.id, seq, 1, status, why, ts(start), endedAt, sent})
	}
	firstMove := int64(0)
	if len(moves) > 0 {
		firstMove = moves[0].at
	}
	enrolment("welcome", c.created, []int64{0, 48 * 3600}, firstMove, "exited", "exit: stage != \"awareness\"", nil)
	retained := false
	for i, m := range moves {
		next := int64(0)
		if i+1 < len(moves) {
			next = moves[i+1].at
		}
		switch {
		case m.to == "decision" && stageOrder[m.from] < stageOrder[m.to]:
			// Shopping: the cart reminder; an order within the day ends it.
			conv := int64(0)
			if next > 0 && moves[i+1].to == "retention" && next-m.at < 3*86400 {
				conv = next
			}
			enrolment("cart-reminder", m.at, []int64{3600, 25 * 3600}, conv, "converted", "goal: order_completed", nil)
		case m.to == "decision":
			// Lapsed: the win-back email; an order converts it.
			conv := int64(0)
			if next > 0 && moves[i+1].to == "retention" {
				conv = next
			}
			enrolment("win-back", m.at, []int64{0}, conv, "converted", "goal: order_completed", nil)
			if r.IntN(10) == 0 && m.at+60*86400 <= s.now {
				s.rows[tDraws] = append(s.rows[tDraws], []any{c.id, "come-back", false, nil, nil, ts(m.at + 60*86400)})
				s.counts.Draws++
			}
		case m.to == "retention":
			first := !retained
			retained = true
			enrolment("post-purchase", m.at, []int64{0, 10 * 86400}, 0, "", "", func(step int) bool { return step == 0 && !first })
		case m.to == "advocacy":
			enrolment("advocacy", m.at, []int64{86400}, 0, "", "", nil)
			at := m.at + int64(r.IntN(20*86400))
			if at <= s.now {
				drawn := r.Float64() < 0.3
				var code, exp any
				if drawn {
					cd := "THANKS-" + strings.ToUpper(strconv.FormatInt(c.id, 36)) + "-" + strconv.Itoa(i)
					e := ts(at + 30*86400)
					code, exp = cd, e
					email(0, "", 0, "surprise", at, "surprise-thank-you", cd, &e, false)
				}
				s.rows[tDraws] = append(s.rows[tDraws], []any{c.id, "surprise-thank-you", drawn, code, exp, ts(at)})
				s.counts.Draws++
			}
		}
	}
	// About one in sixty unsubscribes at some point.
	if r.IntN(60) == 0 && c.email != "" {
		t := c.created + int64(r.Float64()*float64(s.now-c.created))
		s.rows[tSupp] = append(s.rows[tSupp], []any{c.email, "unsubscribed", "unsubscribe link", ts(t)})
		s.rows[tEvents] = append(s.rows[tEvents], []any{c.id, "dash-u-" + strconv.FormatInt(c.id, 36), "internal", "unsubscribed", `{"via":"link"}`, ts(t), ts(t)})
		s.counts.Unsubscribed++
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// simRows feeds COPY one table's rows of every contact, simulating each
// contact in turn (every table's COPY runs its own simulation, so the ids
// agree without holding all rows in memory).
type simRows struct {
	sim      *dashSim
	contacts []dashContact
	table    int
	next     int // next contact to simulate
	buf      [][]any
	pos      int
	row      []any
}

func (r *simRows) Next() bool {
	for r.pos >= len(r.buf) {
		if r.next >= len(r.contacts) {
			return false
		}
		r.sim.contact(r.contacts[r.next])
		r.next++
		r.buf, r.pos = r.sim.rows[r.table], 0
	}
	r.row = r.buf[r.pos]
	r.pos++
	return true
}

func (r *simRows) Values() ([]any, error) { return r.row, nil }
func (r *simRows) Err() error             { return nil }

// LoadDashboardData replaces a database's journey history (transitions,
// enrolments, sends, offer draws, suppressions, the dashboard's rollups
// and any events an earlier load added, which it marks by leaving the
// table bench_dash_meta for the caller to fill) with a generated one over its
// contacts, as of now, and sets each contact's stage to where its walk
// ended. The journey (examples/journey.yaml) must be applied: the walk
// takes its rules, and the emails are its sequences' templates.
func LoadDashboardData(ctx context.Context, pool *pgxpool.Pool, now time.Time, progress io.Writer) (DashData, error) {
	start := time.Now()
	var d DashData
	rules, err := dashRules(ctx, pool)
	if err != nil {
		return d, err
	}
	var missing []string
	for seq := range DashboardSequences {
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sequences WHERE name = $1)`, seq).Scan(&ok); err != nil {
			return d, err
		}
		if !ok {
			missing = append(missing, seq)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return d, fmt.Errorf("dashboard data: the journey has no sequence %s: apply examples/journey.yaml first", strings.Join(missing, ", "))
	}
	var contacts []dashContact
	rows, err := pool.Query(ctx, `SELECT id, extract(epoch FROM created_at)::bigint, coalesce(traits->>'plan', ''), coalesce(email, '')
		FROM contacts WHERE merged_into IS NULL ORDER BY id`)
	if err != nil {
		return d, fmt.Errorf("dashboard data: reading contacts: %w", err)
	}
	var c dashContact
	if _, err := pgx.ForEachRow(rows, []any{&c.id, &c.created, &c.plan, &c.email}, func() error {
		contacts = append(contacts, c)
		return nil
	}); err != nil {
		return d, fmt.Errorf("dashboard data: reading contacts: %w", err)
	}
	if len(contacts) == 0 {
		return d, errors.New("dashboard data: the database has no contacts")
	}
	fmt.Fprintf(progress, "  %d contacts read; clearing the journey's history\n", len(contacts))
	t := time.Now()
	// The events an earlier load added (it left its table behind): a scan
	// of all events, so only when there was one.
	var earlier bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('bench_dash_meta') IS NOT NULL`).Scan(&earlier); err != nil {
		return d, err
	}
	if earlier {
		if _, err := pool.Exec(ctx, `DELETE FROM events WHERE message_id LIKE 'dash-%'`); err != nil {
			return d, fmt.Errorf("dashboard data: deleting the events an earlier load added: %w", err)
		}
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS bench_dash_meta (complete bool, loaded_at timestamptz, summary text)`,
		`TRUNCATE bench_dash_meta`,
		`TRUNCATE transitions, enrolments, sends, offer_draws, suppressions, stats_moves, stats_entries, stats_stays, stats_email, stats_steps, stats_offers, stats_state RESTART IDENTITY`,
		`UPDATE contacts SET stage = 'awareness', stage_entered_at = created_at WHERE stage <> 'awareness' OR stage_entered_at <> created_at`,
		`DROP TABLE IF EXISTS bench_dash_stage`,
		`CREATE UNLOGGED TABLE bench_dash_stage (id bigint PRIMARY KEY, stage text NOT NULL, at timestamptz NOT NULL)`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return d, fmt.Errorf("dashboard data: %s: %w", strings.SplitN(q, "\n", 2)[0], err)
		}
	}
	fmt.Fprintf(progress, "  cleared in %.1fs\n", time.Since(t).Seconds())
	sim := func() *dashSim { return &dashSim{now: now.Unix(), rules: rules} }
	// The simulation goes contact by contact, but the product writes
	// moves, emails and events as time goes by, so that recent rows lie
	// together (what the rollups' refresh reads): those tables are
	// copied into a scratch table first, and inserted from it in time
	// order (the by-name order of the columns given: id first where the
	// simulation numbered the rows).
	copies := []struct {
		table int
		name  string
		cols  []string
		order string // staged and inserted in this order if set
	}{
		{tMoves, "transitions", []string{"contact_id", "from_stage", "to_stage", "rule", "rule_version", "observed", "trigger", "at"}, "at"},
		{tEnrol, "enrolments", []string{"id", "contact_id", "sequence", "version", "status", "reason", "enrolled_at", "ended_at", "next_step"}, "enrolled_at"},
		{tSends, "sends", []string{"id", "contact_id", "enrolment_id", "sequence", "step", "offer", "offer_code", "offer_expires", "template", "status", "due_at",
			"template_version", "tone", "tone_reason", "recipient", "message_id", "smtp_response", "attempts", "sent_at", "created_at", "updated_at"}, "due_at"},
		{tEvents, "events", []string{"contact_id", "message_id", "kind", "name", "properties", "occurred_at", "received_at"}, "received_at"},
		{tDraws, "offer_draws", []string{"contact_id", "offer", "drawn", "code", "expires_at", "at"}, "at"},
		{tSupp, "suppressions", []string{"email", "reason", "detail", "created_at"}, ""},
		{tStage, "bench_dash_stage", []string{"id", "stage", "at"}, ""},
	}
	g, gctx := errgroup.WithContext(ctx)
	sims := make([]*dashSim, len(copies))
	for i, cp := range copies {
		sims[i] = sim()
		g.Go(func() error {
			t := time.Now()
			target := cp.name
			cols := strings.Join(cp.cols, ", ")
			if cp.order != "" {
				target = "bench_dash_" + cp.name
				q := `DROP TABLE IF EXISTS ` + target + `; CREATE UNLOGGED TABLE ` + target + ` AS SELECT ` + cols + ` FROM ` + cp.name + ` WHERE false`
				if _, err := pool.Exec(gctx, q); err != nil {
					return fmt.Errorf("dashboard data: %s: %w", q, err)
				}
			}
			n, err := pool.CopyFrom(gctx, pgx.Identifier{target}, cp.cols, &simRows{sim: sims[i], contacts: contacts, table: cp.table})
			if err != nil {
				return fmt.Errorf("dashboard data: copying %s: %w", cp.name, err)
			}
			copied := time.Since(t)
			if cp.order != "" {
				over := ""
				if cp.cols[0] == "id" {
					over = "OVERRIDING SYSTEM VALUE "
				}
				q := `INSERT INTO ` + cp.name + ` (` + cols + `) ` + over + `SELECT ` + cols + ` FROM ` + target + ` ORDER BY ` + cp.order
				if _, err := pool.Exec(gctx, q); err != nil {
					return fmt.Errorf("dashboard data: inserting %s in time order: %w", cp.name, err)
				}
				if _, err := pool.Exec(gctx, `DROP TABLE `+target); err != nil {
					return err
				}
			}
			fmt.Fprintf(progress, "  %s: %d rows in %.1fs (simulated and copied in %.1fs)\n", cp.name, n, time.Since(t).Seconds(), copied.Seconds())
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return d, err
	}
	d = sims[0].counts
	// Opens and clicks name their send by the simulation's numbering:
	// check that every pass numbered alike.
	var sMax, sN, eMax, eN int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(id), 0), count(*) FROM sends`).Scan(&sMax, &sN); err != nil {
		return d, err
	}
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(id), 0), count(*) FROM enrolments`).Scan(&eMax, &eN); err != nil {
		return d, err
	}
	if sMax != sN || sN != d.Sends || eMax != eN || eN != d.Enrolments {
		return d, fmt.Errorf("dashboard data: ids are not the simulation's: sends max %d count %d (simulated %d), enrolments max %d count %d (simulated %d)",
			sMax, sN, d.Sends, eMax, eN, d.Enrolments)
	}
	var mismatched int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM sends s LEFT JOIN enrolments e ON e.contact_id = s.contact_id AND e.id = s.enrolment_id
		WHERE s.enrolment_id IS NOT NULL AND (e.id IS NULL OR e.sequence <> s.sequence) AND s.id % 97 = 0`).Scan(&mismatched); err != nil {
		return d, err
	}
	if mismatched > 0 {
		return d, fmt.Errorf("dashboard data: %d sends name an enrolment of another contact or sequence", mismatched)
	}
	t = time.Now()
	for _, q := range []string{
		`UPDATE contacts c SET stage = s.stage, stage_entered_at = s.at FROM bench_dash_stage s WHERE c.id = s.id`,
		`DROP TABLE bench_dash_stage`,
		`SELECT setval(pg_get_serial_sequence('sends', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM sends), false)`,
		`SELECT setval(pg_get_serial_sequence('enrolments', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM enrolments), false)`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return d, fmt.Errorf("dashboard data: %s: %w", q, err)
		}
	}
	fmt.Fprintf(progress, "  contacts' stages set in %.1fs\n", time.Since(t).Seconds())
	t = time.Now()
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) contacts, transitions, enrolments, sends, offer_draws, suppressions, events`); err != nil {
		return d, fmt.Errorf("dashboard data: vacuum: %w", err)
	}
	fmt.Fprintf(progress, "  VACUUM ANALYZE in %.1fs\n", time.Since(t).Seconds())
	d.Elapsed = time.Since(start)
	return d, nil
}

// dashRules reads the stored rules, by the stage they move from, with a
// plausible record of what each saw.
func dashRules(ctx context.Context, pool *pgxpool.Pool) (map[string][]dashRule, error) {
	rows, err := pool.Query(ctx, `SELECT name, from_stages, to_stage, condition FROM rules ORDER BY position, name`)
	if err != nil {
		return nil, fmt.Errorf("dashboard data: reading rules: %w", err)
	}
	out := map[string][]dashRule{}
	var (
		name, to, cond string
		from           []string
	)
	agg := regexp.MustCompile(`(count|sum|distinct|days_since|ever)\([^)]*\)`)
	n := 0
	if _, err := pgx.ForEachRow(rows, []any{&name, &from, &to, &cond}, func() error {
		var b bytes.Buffer
		b.WriteByte('{')
		for i, a := range agg.FindAllString(cond, 4) {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q: %d", a, 3+i)
		}
		b.WriteByte('}')
		for _, f := range from {
			out[f] = append(out[f], dashRule{name: name, from: from, to: to, obs: b.String()})
		}
		n++
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dashboard data: reading rules: %w", err)
	}
	if n == 0 {
		return nil, errors.New("dashboard data: no rules stored: apply examples/journey.yaml first")
	}
	return out, nil
}

// DashRequest is one page or endpoint the benchmark requests.
type DashRequest struct {
	Name   string
	Method string
	Path   string
	Body   string // form (dashboard) or JSON (API) body
	Want   int    // expected status
	API    bool   // with the API key; else with the dashboard session
}

// DashClient requests the dashboard (logged in with a session cookie) and
// the API (with a bearer key) of one server.
type DashClient struct {
	Base string
	Key  string
	CSRF string
	c    *http.Client
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// DashLogin logs in to the dashboard at base with key, as a browser does:
// the login form, the session cookie, the CSRF token of the page it lands
// on.
func DashLogin(ctx context.Context, base, key string) (*DashClient, error) {
	jar, _ := cookiejar.New(nil)
	c := &DashClient{Base: base, Key: key, c: &http.Client{
		Jar:           jar,
		Timeout:       2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{MaxIdleConnsPerHost: 4},
	}}
	form := url.Values{"key": {key}, "next": {"/dashboard/"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/dashboard/login", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := c.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("logging in: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("logging in: status %d, want 303", resp.StatusCode)
	}
	code, body, _, err := c.Do(ctx, DashRequest{Name: "login check", Method: http.MethodGet, Path: "/dashboard/rules", Want: 200})
	if err != nil {
		return nil, err
	}
	m := csrfField.FindSubmatch(body)
	if code != http.StatusOK || m == nil {
		return nil, fmt.Errorf("logging in: the dashboard answered %d without a CSRF token", code)
	}
	c.CSRF = string(m[1])
	return c, nil
}

// Do makes one request and returns its status, body and latency (to the
// last byte of the body). A status other than the request's Want is an
// error naming the request.
func (c *DashClient) Do(ctx context.Context, r DashRequest) (int, []byte, time.Duration, error) {
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, c.Base+r.Path, body)
	if err != nil {
		return 0, nil, 0, err
	}
	switch {
	case r.API:
		req.Header.Set("Authorization", "Bearer "+c.Key)
		if r.Body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
	case r.Method != http.MethodGet:
		req.Header.Set("Origin", c.Base)
		req.Header.Set("X-CSRF-Token", c.CSRF)
		if strings.HasPrefix(r.Body, "{") {
			req.Header.Set("Content-Type", "application/json")
		} else {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	start := time.Now()
	resp, err := c.c.Do(req)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("%s (%s %s): %w", r.Name, r.Method, r.Path, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return resp.StatusCode, nil, took, fmt.Errorf("%s (%s %s): reading the answer: %w", r.Name, r.Method, r.Path, err)
	}
	if r.Want != 0 && resp.StatusCode != r.Want {
		return resp.StatusCode, b, took, fmt.Errorf("%s (%s %s): status %d, want %d: %.300s", r.Name, r.Method, r.Path, resp.StatusCode, r.Want, b)
	}
	return resp.StatusCode, b, took, nil
}

// DashResult is one request's latencies.
type DashResult struct {
	Request DashRequest
	First   time.Duration // the warm-up request: the first since the data was loaded or the server started
	Latency Latency
	Bytes   int
}

// MeasureDashboard requests every page rounds times, one after another
// (round by round, so a slow moment of the machine spreads over all
// pages), after one warm-up round, and summarises each one's latencies.
func MeasureDashboard(ctx context.Context, c *DashClient, reqs []DashRequest, rounds int) ([]DashResult, error) {
	took := make([][]time.Duration, len(reqs))
	first := make([]time.Duration, len(reqs))
	size := make([]int, len(reqs))
	for round := -1; round < rounds; round++ {
		for i, r := range reqs {
			_, b, d, err := c.Do(ctx, r)
			if err != nil {
				return nil, err
			}
			if round >= 0 {
				took[i] = append(took[i], d)
			} else {
				first[i] = d
			}
			size[i] = len(b)
		}
	}
	out := make([]DashResult, len(reqs))
	for i, r := range reqs {
		out[i] = DashResult{Request: r, First: first[i], Latency: Summarise(took[i]), Bytes: size[i]}
	}
	return out, nil
}

// DashContacts picks contacts worth opening: the one with the most events,
// the most stage moves and the most emails, and a few more at random
// (seeded, so every run opens the same ones).
func DashContacts(ctx context.Context, pool *pgxpool.Pool, random int) ([]int64, []string, error) {
	var ids []int64
	var why []string
	for _, q := range []struct{ why, sql string }{
		// The activity rollup has a record per event: its size finds the
		// busiest contact without a GROUP BY over every event.
		{"most events", `SELECT contact_id FROM activity ORDER BY octet_length(data) DESC, contact_id LIMIT 1`},
		// Without the rollup (never swept): the busiest of the first
		// 20,000 contacts, through the index alone.
		{"most events of the first 20,000", `SELECT contact_id FROM events WHERE contact_id <= 20000 AND NOT EXISTS (SELECT 1 FROM activity)
			GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1`},
		{"most stage moves", `SELECT contact_id FROM transitions GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1`},
		{"most emails", `SELECT contact_id FROM sends GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1`},
	} {
		var id int64
		err := pool.QueryRow(ctx, q.sql).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("picking the contact with the %s: %w", q.why, err)
		}
		if !slices.Contains(ids, id) {
			ids, why = append(ids, id), append(why, q.why)
		}
	}
	var maxID int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM contacts`).Scan(&maxID); err != nil {
		return nil, nil, err
	}
	r := rand.New(rand.NewPCG(42, 7))
	for k := 0; k < random*20 && len(ids) < 3+random && maxID > 0; k++ {
		id := 1 + r.Int64N(maxID)
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM contacts WHERE id = $1 AND merged_into IS NULL)`, id).Scan(&ok); err != nil {
			return nil, nil, err
		}
		if ok && !slices.Contains(ids, id) {
			ids, why = append(ids, id), append(why, "random")
		}
	}
	if len(ids) == 0 {
		return nil, nil, errors.New("picking contacts: the database has none")
	}
	return ids, why, nil
}

// AddActivity adds what a busy shop's half minute brings, as of now: n
// emails sent (to n contacts picked at random, as the first step of a
// sequence that sent before, in its tone), a person's open of half of
// them and a click of one in five, a minute later, and an order (10 to
// 200 of revenue) by one in ten, two minutes later — what an incremental
// refresh of the reports then takes in.
func AddActivity(ctx context.Context, pool *pgxpool.Pool, now time.Time, n int) error {
	_, err := pool.Exec(ctx, `
WITH model AS (SELECT sequence, template, coalesce(tone, '') AS tone FROM sends WHERE status = 'sent' AND sequence IS NOT NULL LIMIT 1),
c AS (SELECT id, email FROM contacts WHERE merged_into IS NULL AND email IS NOT NULL ORDER BY random() LIMIT $1),
s AS (
    INSERT INTO sends (contact_id, sequence, step, template, tone, status, due_at, sent_at, recipient, message_id)
    SELECT c.id, m.sequence, 0, m.template, nullif(m.tone, ''), 'sent', $2, $2, c.email, 'bench-' || c.id || '-' || extract(epoch FROM $2::timestamptz)::bigint
    FROM c CROSS JOIN model m
    RETURNING contact_id, id, sequence, template
)
INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
SELECT s.contact_id, 'bench-' || x.name || '-' || s.id, x.kind, x.name,
       CASE WHEN x.name = 'order_completed' THEN jsonb_build_object('revenue', 10 + s.id % 191)
            ELSE jsonb_build_object('send_id', s.id, 'sequence', s.sequence, 'step', 0, 'template', s.template) END,
       $2::timestamptz + x.after
FROM s
CROSS JOIN LATERAL (VALUES ('email_opened', 'internal', interval '1 minute', 2), ('email_clicked', 'internal', interval '1 minute', 5),
                           ('order_completed', 'track', interval '2 minutes', 10)) x(name, kind, after, every)
WHERE s.id % x.every = 0`, n, now)
	return err
}
