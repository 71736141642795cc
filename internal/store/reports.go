package store

// The reports (issue 21), read from the rollups RefreshReports maintains
// (reports_refresh.go): each read sums a period's days of one rollup.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/report"
)

// sqlPeriodDays selects a rollup's days in the period [$1, $2).
const sqlPeriodDays = `day >= ($1::timestamptz AT TIME ZONE 'UTC')::date AND day < ($2::timestamptz AT TIME ZONE 'UTC')::date`

// reportDims says, per dimension, what report_days' rows are grouped by
// (name and idx, report.Line's) and which rows count.
var reportDims = map[report.Dimension]struct{ name, idx, where string }{
	report.ByTemplate:  {"template", "0", "true"},
	report.ByStep:      {"sequence", "step", "sequence <> ''"},
	report.BySequence:  {"sequence", "0", "sequence <> ''"},
	report.ByBroadcast: {"broadcast", "0", "broadcast <> ''"},
	report.ByVariant:   {"broadcast", "variant", "broadcast <> '' AND variant >= 0"},
	report.ByTone:      {"tone", "0", "true"},
	report.ByStage:     {"stage", "0", "true"},
	report.ByOffer:     {"offer", "0", "offer <> ''"},
}

// reportRefreshedAt is when the rollups were last refreshed (zero: never).
func (s *Store) reportRefreshedAt(ctx context.Context) (time.Time, error) {
	var at *time.Time
	err := s.db.QueryRow(ctx, `SELECT refreshed_at FROM report_state`).Scan(&at)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, err
	}
	if at == nil {
		return time.Time{}, nil
	}
	return *at, nil
}

// Report implements report.Reader: the figures of the emails sent in the
// period, grouped by the dimension.
func (s *Store) Report(ctx context.Context, by report.Dimension, p report.Period) (report.Table, error) {
	d, ok := reportDims[by]
	if !ok {
		_, err := report.ParseDimension(string(by))
		return report.Table{}, err
	}
	at, err := s.reportRefreshedAt(ctx)
	if err != nil {
		return report.Table{}, translate(err, "reading the reports' state")
	}
	lines, err := queryRows[report.Line](ctx, s.db, `SELECT `+d.name+` AS name, `+d.idx+`::int AS idx,
		sum(sent)::bigint AS sent, sum(delivered)::bigint AS delivered, sum(hard_bounced)::bigint AS hard_bounced,
		sum(soft_bounced)::bigint AS soft_bounced, sum(complained)::bigint AS complained, sum(opened)::bigint AS opened,
		sum(clicked)::bigint AS clicked, sum(unsubscribed)::bigint AS unsubscribed, sum(converted)::bigint AS converted,
		sum(conversions)::bigint AS conversions, sum(revenue)::float8 AS revenue
		FROM report_days WHERE `+sqlPeriodDays+` AND `+d.where+` GROUP BY 1, 2`, p.From, p.To)
	if err != nil {
		return report.Table{}, translate(err, "reading the report by "+string(by))
	}
	return report.NewTable(by, p, lines, at), nil
}

// holdoutLine is an offer's drawn or held-out draws over a period.
type holdoutLine struct {
	Offer     string  `db:"offer"`
	Drawn     bool    `db:"drawn"`
	N         int64   `db:"n"`
	Converted int64   `db:"converted"`
	Revenue   float64 `db:"revenue"`
	RevenueSq float64 `db:"revenue_sq"`
}

// Holdouts implements report.Reader: per offer, the contacts drawn in the
// period against those held out, by what they did within
// report.HoldoutHorizon of their draw.
func (s *Store) Holdouts(ctx context.Context, p report.Period) ([]report.Holdout, error) {
	lines, err := queryRows[holdoutLine](ctx, s.db, `SELECT offer, drawn, sum(eligible)::bigint AS n, sum(converted)::bigint AS converted,
		sum(revenue)::float8 AS revenue, sum(revenue_sq)::float8 AS revenue_sq
		FROM report_holdout_days WHERE `+sqlPeriodDays+` GROUP BY 1, 2 ORDER BY 1, 2 DESC`, p.From, p.To)
	if err != nil {
		return nil, translate(err, "reading the offers' holdouts")
	}
	var out []report.Holdout
	groups := map[bool]report.Group{}
	for i, l := range lines {
		name := "holdout"
		if l.Drawn {
			name = "drawn"
		}
		groups[l.Drawn] = report.Group{Name: name, N: l.N, Converted: l.Converted, Revenue: l.Revenue, RevenueSq: l.RevenueSq}
		if i+1 == len(lines) || lines[i+1].Offer != l.Offer {
			drawn, held := groups[true], groups[false]
			drawn.Name, held.Name = "drawn", "holdout"
			out = append(out, report.Holdout{Offer: l.Offer, Comparison: report.Compare(drawn, held)})
			groups = map[bool]report.Group{}
		}
	}
	return out, nil
}

// variantLine is a variant's test emails' figures in a run.
type variantLine struct {
	Run int64 `db:"run"`
	report.Variant
}

// ABTests implements report.Reader: the A/B tests of the broadcast runs
// started in the period, with their variants' test emails' figures, the
// decision recorded and the winner's margin.
func (s *Store) ABTests(ctx context.Context, p report.Period) ([]report.ABTest, error) {
	runs, err := s.runs(ctx, `WHERE started_at >= $1 AND started_at < $2 AND definition->'Test' IS NOT NULL AND jsonb_typeof(definition->'Test') = 'object'
		ORDER BY started_at, id`, p.From, p.To)
	if err != nil {
		return nil, translate(err, "reading the A/B tests' runs")
	}
	ids := make([]int64, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	lines, err := queryRows[variantLine](ctx, s.db, `SELECT broadcast_run AS run, variant::int AS variant, ''::text AS label, sum(sent)::bigint AS sent,
		sum(opened)::bigint AS opened, sum(clicked)::bigint AS clicked, sum(converted)::bigint AS converted,
		sum(revenue)::float8 AS revenue, sum(revenue_sq)::float8 AS revenue_sq
		FROM report_days WHERE ab_test AND broadcast_run = ANY($1) GROUP BY 1, 2`, ids)
	if err != nil {
		return nil, translate(err, "reading the A/B tests' figures")
	}
	figures := map[[2]int64]report.Variant{}
	for _, l := range lines {
		figures[[2]int64{l.Run, int64(l.Index)}] = l.Variant
	}
	out := make([]report.ABTest, 0, len(runs))
	for _, r := range runs {
		t := r.Definition.Test
		ab := report.ABTest{Broadcast: r.Broadcast, Run: r.ID, PickBy: t.PickBy}
		for i := range t.Variants {
			v := figures[[2]int64{r.ID, int64(i)}]
			v.Index, v.Label = i, t.Label(i)
			ab.Variants = append(ab.Variants, v)
		}
		if d := r.Decision; d != nil {
			ab.Decided, ab.Winner, ab.Reason = true, d.Winner, d.Reason
		}
		ab.SetMargin()
		out = append(out, ab)
	}
	return out, nil
}

// stageLine is a stage's figures over a period.
type stageLine struct {
	Stage       string  `db:"stage"`
	Entered     int64   `db:"entered"`
	MovedOn     int64   `db:"moved_on"`
	Regressed   int64   `db:"regressed"`
	Conversions int64   `db:"conversions"`
	Revenue     float64 `db:"revenue"`
}

// sqlStages sums each stage's entries (moves in; new contacts for
// awareness), moves out and the conversions made in it over the period.
const sqlStages = `
WITH moves AS (
    SELECT stage, sum(entered) AS entered, sum(moved_on) AS moved_on, sum(regressed) AS regressed
    FROM report_stage_days WHERE ` + sqlPeriodDays + ` GROUP BY 1
    UNION ALL
    SELECT 'awareness', count(*), 0, 0 FROM contacts WHERE created_at >= $1 AND created_at < $2
), conv AS (
    SELECT stage, sum(conversions) AS conversions, sum(revenue) AS revenue
    FROM report_conversion_days WHERE ` + sqlPeriodDays + ` GROUP BY 1
)
SELECT coalesce(m.stage, c.stage) AS stage, coalesce(m.entered, 0)::bigint AS entered, coalesce(m.moved_on, 0)::bigint AS moved_on,
       coalesce(m.regressed, 0)::bigint AS regressed, coalesce(c.conversions, 0)::bigint AS conversions, coalesce(c.revenue, 0)::float8 AS revenue
FROM (SELECT stage, sum(entered) AS entered, sum(moved_on) AS moved_on, sum(regressed) AS regressed FROM moves GROUP BY 1) m
FULL JOIN conv c ON c.stage = m.stage`

// stayBucket is how many moves forward out of a stage in a period ended a
// stay of a bucket (report_moves.bucket).
type stayBucket struct {
	Stage  string `db:"stage"`
	Bucket int    `db:"bucket"`
	N      int64  `db:"n"`
}

// stageMedians returns the exact median stay before each stage's moves
// forward in the period (percentile_cont's: the middle stay, or the mean
// of the two middle ones). From the counts per bucket of stay it finds
// the buckets holding the middle ranks, then reads only their moves, in
// stay order (buckets are in stay order too).
func (s *Store) stageMedians(ctx context.Context, p report.Period) (map[string]time.Duration, error) {
	counts, err := queryRows[stayBucket](ctx, s.db, `SELECT stage, bucket, sum(n)::bigint AS n FROM report_stays
		WHERE `+sqlPeriodDays+` GROUP BY 1, 2 ORDER BY 1, 2`, p.From, p.To)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Duration{}
	for i := 0; i < len(counts); {
		j, total := i, int64(0)
		for ; j < len(counts) && counts[j].Stage == counts[i].Stage; j++ {
			total += counts[j].N
		}
		// The middle ranks (from 0): one for an odd count, two for an even.
		lo, hi := (total-1)/2, total/2
		var below, skip int64
		first, last := -1, -1
		for k := i; k < j; k++ {
			if first < 0 && below+counts[k].N > lo {
				first, skip = counts[k].Bucket, lo-below
			}
			if below+counts[k].N > hi {
				last = counts[k].Bucket
				break
			}
			below += counts[k].N
		}
		rows, err := s.db.Query(ctx, `SELECT extract(epoch FROM stay)::float8 FROM report_moves
			WHERE forward AND from_stage = $3 AND bucket BETWEEN $4 AND $5 AND `+sqlPeriodDays+`
			ORDER BY stay OFFSET $6 LIMIT $7`, p.From, p.To, counts[i].Stage, first, last, skip, hi-lo+1)
		if err != nil {
			return nil, err
		}
		stays, err := pgx.CollectRows(rows, pgx.RowTo[float64])
		if err != nil {
			return nil, err
		}
		if len(stays) > 0 {
			m := (stays[0] + stays[len(stays)-1]) / 2
			out[counts[i].Stage] = time.Duration(math.Round(m * float64(time.Second)))
		}
		i = j
	}
	return out, nil
}

// stageNow is a number of contacts in a stage now.
type stageNow struct {
	Stage string `db:"stage"`
	N     int64  `db:"n"`
}

// Stages implements report.Reader: each stage's contacts now (as the
// dashboard's last refresh counted them, or counted now before one) and
// its economics over the period, in journey order.
func (s *Store) Stages(ctx context.Context, p report.Period) ([]report.Stage, error) {
	now, err := queryRows[stageNow](ctx, s.db, `SELECT key AS stage, value::bigint AS n FROM stats_state, jsonb_each_text(stages)`)
	if err == nil && len(now) == 0 {
		now, err = queryRows[stageNow](ctx, s.db, `SELECT stage, count(*) AS n FROM contacts WHERE merged_into IS NULL GROUP BY 1`)
	}
	if err != nil {
		return nil, translate(err, "counting the contacts per stage")
	}
	lines, err := queryRows[stageLine](ctx, s.db, sqlStages, p.From, p.To)
	if err != nil {
		return nil, translate(err, "reading the stages' economics")
	}
	medians, err := s.stageMedians(ctx, p)
	if err != nil {
		return nil, translate(err, "reading the stages' median stays")
	}
	byStage := map[string]*report.Stage{}
	var out []report.Stage
	for _, name := range stageNames() {
		out = append(out, report.Stage{Stage: name})
	}
	for i := range out {
		byStage[out[i].Stage] = &out[i]
	}
	for _, n := range now {
		if st := byStage[n.Stage]; st != nil {
			st.Contacts = n.N
		}
	}
	for _, l := range lines {
		st := byStage[l.Stage]
		if st == nil {
			return nil, fmt.Errorf("reading the stages' economics: unknown stage %q", l.Stage)
		}
		st.Entered, st.MovedOn, st.Regressed, st.Conversions, st.Revenue = l.Entered, l.MovedOn, l.Regressed, l.Conversions, l.Revenue
		st.SetShare()
	}
	for stage, m := range medians {
		if st := byStage[stage]; st != nil {
			st.MedianToNext = &m
		}
	}
	return out, nil
}

// Days implements report.Reader: the conversions and revenue of each day
// of the period that has any, all of them and those credited to an email.
func (s *Store) Days(ctx context.Context, p report.Period) ([]report.Day, error) {
	out, err := queryRows[report.Day](ctx, s.db, `SELECT day::timestamp AT TIME ZONE 'UTC' AS day, sum(conversions)::bigint AS conversions,
		sum(revenue)::float8 AS revenue, coalesce(sum(conversions) FILTER (WHERE credited), 0)::bigint AS attributed,
		coalesce(sum(revenue) FILTER (WHERE credited), 0)::float8 AS attributed_revenue
		FROM report_conversion_days WHERE `+sqlPeriodDays+` GROUP BY day ORDER BY day`, p.From, p.To)
	return out, translate(err, "reading conversions per day")
}
