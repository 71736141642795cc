package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/bench"
	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/rule"
)

// Targets of the whole path (issue 17), judged by the benchmark, never by
// a unit test.
const (
	targetLinear     = 1.5  // µs per contact at the largest size / at the smallest
	targetImport     = 2.0  // waymark import / PostgreSQL's COPY of the same rows
	targetImportRSS  = 300  // MB, peak, whatever the file's size
	targetTick       = 3.0  // first tick / the same work as plain SQL
	targetSendPool   = 5000 // emails/s, the default pool
	targetSendWide   = 10000
	defaultServerURL = "postgres://postgres@127.0.0.1:5432/postgres"
)

type pathFlags struct {
	sizes    []int
	server   string
	dir      string
	bin      string
	journey  string
	wide     int
	formats  map[string]bool
	keep     bool
	verbose  bool
	sendFrom string
	explain  time.Duration
}

// step is one measured step of the path at one size.
type step struct {
	name  string
	m     measure
	base  time.Duration // PostgreSQL doing the same work as plain SQL (0: not measured)
	note  string        // what the step did
	sent  int           // emails, for sending steps
	sendT time.Duration // the sending itself, as the tick reports it
}

type sizeResult struct {
	n     int
	steps []step
}

func (r *sizeResult) step(name string) *step {
	for i := range r.steps {
		if r.steps[i].name == name {
			return &r.steps[i]
		}
	}
	return nil
}

func cmdPath(ctx context.Context, e *env, args []string) error {
	getenv, stdout, stderr := e.getenv, e.stdout, e.stderr
	var f pathFlags
	fs := flag.NewFlagSet("path", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("sizes", "10000,100000,1000000", "contacts at each size, comma-separated (about 18 events each)")
	fs.StringVar(&f.server, "database-url", getenv("DATABASE_URL"), "a PostgreSQL server (a superuser: databases are created and dropped, COPY writes files, CHECKPOINT runs); default "+defaultServerURL)
	fs.StringVar(&f.dir, "dir", os.TempDir(), "where the generated files go (PostgreSQL's server must be able to write there too)")
	fs.StringVar(&f.bin, "waymark", "", "the waymark binary (default: built from ./cmd/waymark)")
	fs.StringVar(&f.journey, "journey", "examples/journey.yaml", "the journey to apply")
	fs.IntVar(&f.wide, "connections", 64, "SMTP connections of the wide send (the other uses the default pool)")
	formats := fs.String("formats", "jsonl,csv", "import formats to measure (the JSON lines import carries the rest of the path)")
	fs.BoolVar(&f.keep, "keep", false, "keep the largest size's database (waymark_bench_path)")
	fs.BoolVar(&f.verbose, "v", false, "show waymark's own output")
	fs.DurationVar(&f.explain, "explain", 0, "log the plan of every statement slower than this to PostgreSQL's log (auto_explain), to see where the time goes")
	fs.StringVar(&f.sendFrom, "from", "Fernwood Supply <hello@fernwoodsupply.example>", "WAYMARK_FROM of the sending steps")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(s), "_", ""))
		if err != nil || n <= 0 {
			return fmt.Errorf("-sizes: %q is not a number of contacts", s)
		}
		f.sizes = append(f.sizes, n)
	}
	sort.Ints(f.sizes)
	f.formats = map[string]bool{}
	for _, s := range strings.Split(*formats, ",") {
		if s = strings.TrimSpace(s); s != "jsonl" && s != "csv" {
			return fmt.Errorf("-formats: %q is not jsonl or csv", s)
		}
		f.formats[s] = true
	}
	if !f.formats["jsonl"] {
		return errors.New("-formats: jsonl is needed (its import carries the rest of the path)")
	}
	if f.server == "" {
		f.server = defaultServerURL
	}
	work, err := os.MkdirTemp(f.dir, "waymark-bench-path-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// PostgreSQL's server writes and reads the COPY files here.
	if err := os.Chmod(work, 0o777); err != nil {
		return err
	}
	w := &waymark{bin: f.bin}
	if f.verbose {
		w.verbose = stderr
	}
	if w.bin == "" {
		if w.bin, err = build(ctx, work); err != nil {
			return err
		}
	}
	j, err := journey.Load(f.journey)
	if err != nil {
		return err
	}
	sink, err := bench.StartSink(ctx)
	if err != nil {
		return fmt.Errorf("%w (install Postfix: apt-get install postfix)", err)
	}
	defer sink.Stop()
	fmt.Fprintf(stdout, "waymark-bench path: %s on PostgreSQL at %s, sending into %s\n\n", f.journey, pgserver.Redact(f.server), sink.Command())
	var results []*sizeResult
	for i, n := range f.sizes {
		keep := f.keep && i == len(f.sizes)-1
		r, err := pathAt(ctx, &f, w, j, sink, work, n, keep, stdout)
		if err != nil {
			return fmt.Errorf("%d contacts: %w", n, err)
		}
		results = append(results, r)
	}
	summary(stdout, results)
	return nil
}

var (
	tickLine = regexp.MustCompile(`evaluated (\d+) contacts, (\d+) moved \((\d+) hops\) in ([0-9.]+)s`)
	sentLine = regexp.MustCompile(`sent (\d+) in ([0-9.]+)s \([0-9]+/s\); (\d+) failed, (\d+) unknown, (\d+) suppressed, (\d+) skipped, (\d+) cancelled, (\d+) expired, (\d+) delayed`)
)

// pathAt runs the whole path for n contacts and prints its steps.
func pathAt(ctx context.Context, f *pathFlags, w *waymark, j *journey.Journey, sink *bench.Sink, work string, n int, keep bool, out io.Writer) (*sizeResult, error) {
	r := &sizeResult{n: n}
	dir := filepath.Join(work, strconv.Itoa(n))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, err
	}
	end := time.Now().UTC().Truncate(time.Second)
	pop := bench.Population{Contacts: n, End: end}
	genStart := time.Now()
	files, err := pop.WriteFiles(dir)
	if err != nil {
		return nil, err
	}
	jsonlSize := fileSize(files.JSONL)
	fmt.Fprintf(out, "── %s contacts, %s events over 400 days to %s (JSON lines %s, written in %s) ──\n",
		humanize.Comma(int64(n)), humanize.Comma(int64(files.Events)), end.Format(time.RFC3339), mb(jsonlSize), secs(time.Since(genStart)))

	db, err := bench.CreateDatabase(ctx, f.server, "waymark_bench_path")
	if err != nil {
		return nil, err
	}
	if !keep {
		defer db.Drop(context.Background())
	}
	env := map[string]string{"DATABASE_URL": db.URL}
	if f.explain > 0 {
		if _, err := sql(ctx, db.URL, `ALTER DATABASE `+pgx.Identifier{db.Name}.Sanitize()+` SET session_preload_libraries = 'auto_explain'`,
			`ALTER DATABASE `+pgx.Identifier{db.Name}.Sanitize()+` SET auto_explain.log_min_duration = '`+strconv.FormatInt(f.explain.Milliseconds(), 10)+`ms'`); err != nil {
			return nil, err
		}
	}
	if _, err := w.run(ctx, env, "migrate"); err != nil {
		return nil, err
	}

	// 1. Import, JSON lines; PostgreSQL alone: COPY of the rows it stored
	// into tables with the same indexes.
	_ = bench.Checkpoint(ctx, db.URL)
	imp, err := w.run(ctx, env, "import", files.JSONL)
	if err != nil {
		return nil, err
	}
	contacts, err := count(ctx, db.URL, `SELECT count(*) FROM contacts WHERE merged_into IS NULL`)
	if err != nil {
		return nil, err
	}
	events, err := count(ctx, db.URL, `SELECT count(*) FROM events`)
	if err != nil {
		return nil, err
	}
	if contacts != int64(n) || events != int64(files.Lines) {
		return nil, fmt.Errorf("the import stored %d contacts and %d events, want %d and %d\n%s", contacts, events, n, files.Lines, imp.Out)
	}
	copyT, err := copyBaseline(ctx, db.URL, dir)
	if err != nil {
		return nil, err
	}
	r.steps = append(r.steps, step{name: "import, JSON lines", m: imp, base: copyT,
		note: fmt.Sprintf("%s lines: %s contacts, %s events", humanize.Comma(int64(files.Lines)), humanize.Comma(contacts), humanize.Comma(events))})

	// 1b. Import, CSV (contacts, then events), into a database of its own.
	if f.formats["csv"] {
		csvDB, err := bench.CreateDatabase(ctx, f.server, "waymark_bench_path_csv")
		if err != nil {
			return nil, err
		}
		csvEnv := map[string]string{"DATABASE_URL": csvDB.URL}
		if _, err := w.run(ctx, csvEnv, "migrate"); err != nil {
			return nil, err
		}
		_ = bench.Checkpoint(ctx, csvDB.URL)
		c1, err := w.run(ctx, csvEnv, "import", files.ContactsCSV)
		if err != nil {
			return nil, err
		}
		c2, err := w.run(ctx, csvEnv, "import", files.EventsCSV)
		if err != nil {
			return nil, err
		}
		c1.add(c2)
		cc, err := count(ctx, csvDB.URL, `SELECT count(*) FROM contacts WHERE merged_into IS NULL`)
		if err != nil {
			return nil, err
		}
		ce, err := count(ctx, csvDB.URL, `SELECT count(*) FROM events WHERE kind = 'track'`)
		if err != nil {
			return nil, err
		}
		if cc != int64(n) || ce != int64(files.Events) {
			return nil, fmt.Errorf("the CSV import stored %d contacts and %d track events, want %d and %d\n%s", cc, ce, n, files.Events, c1.Out)
		}
		csvCopy, err := copyBaseline(ctx, csvDB.URL, dir)
		if err != nil {
			return nil, err
		}
		if err := csvDB.Drop(ctx); err != nil {
			return nil, err
		}
		r.steps = append(r.steps, step{name: "import, CSV", m: c1, base: csvCopy,
			note: fmt.Sprintf("contacts.csv and events.csv (%s)", mb(fileSize(files.ContactsCSV)+fileSize(files.EventsCSV)))})
	}

	// 2. Apply the journey.
	ap, err := w.run(ctx, env, "apply", "-f", f.journey)
	if err != nil {
		return nil, err
	}
	r.steps = append(r.steps, step{name: "apply", m: ap})

	// 3. The first tick, at the end of the history: every contact
	// settles, enrols, offers are drawn. No SMTP: what it queues is sent
	// in step 4.
	if _, err := sql(ctx, db.URL, `CREATE TABLE bench_pre AS SELECT id, stage, stage_entered_at FROM contacts`, `VACUUM ANALYZE bench_pre`); err != nil {
		return nil, err
	}
	_ = bench.Checkpoint(ctx, db.URL)
	asOf := time.Now().UTC().Truncate(time.Second)
	tick, err := w.run(ctx, env, "tick", "--as-of", asOf.Format(time.RFC3339))
	if err != nil {
		return nil, err
	}
	moved, hops := 0, 0
	if m := tickLine.FindStringSubmatch(tick.Out); m != nil {
		moved, _ = strconv.Atoi(m[2])
		hops, _ = strconv.Atoi(m[3])
	}
	enrolled, err := count(ctx, db.URL, `SELECT count(*) FROM enrolments`)
	if err != nil {
		return nil, err
	}
	queued, err := count(ctx, db.URL, `SELECT count(*) FROM sends`)
	if err != nil {
		return nil, err
	}
	draws, err := count(ctx, db.URL, `SELECT count(*) FROM offer_draws`)
	if err != nil {
		return nil, err
	}
	tickBase, err := tickBaseline(ctx, db.URL, j, asOf)
	if err != nil {
		return nil, err
	}
	r.steps = append(r.steps, step{name: "first tick (settle, enrol, draw)", m: tick, base: tickBase,
		note: fmt.Sprintf("%s moved (%s hops), %s enrolled, %s sends queued, %s offer draws", humanize.Comma(int64(moved)), humanize.Comma(int64(hops)), humanize.Comma(enrolled), humanize.Comma(queued), humanize.Comma(draws))})
	if _, err := sql(ctx, db.URL, `DROP TABLE bench_pre`, `VACUUM ANALYZE contacts`); err != nil {
		return nil, err
	}

	// 4. Send what it queued: the default pool here, the wide pool on a
	// copy of the database as it is now.
	_ = bench.Checkpoint(ctx, db.URL)
	wide, err := cloneDatabase(ctx, f.server, db, "waymark_bench_path_wide")
	if err != nil {
		return nil, err
	}
	defer wide.Drop(context.Background())
	smtpURL := "smtp://" + sink.Addr() + "?tls=none"
	sendEnv := map[string]string{"DATABASE_URL": db.URL, "WAYMARK_SMTP_URL": smtpURL, "WAYMARK_FROM": f.sendFrom}
	send := func(name string, env map[string]string, at time.Time) error {
		_ = bench.Checkpoint(ctx, env["DATABASE_URL"])
		m, err := w.run(ctx, env, "tick", "--as-of", at.Format(time.RFC3339))
		if err != nil {
			return err
		}
		s := step{name: name, m: m}
		if x := sentLine.FindStringSubmatch(m.Out); x != nil {
			s.sent, _ = strconv.Atoi(x[1])
			secs, _ := strconv.ParseFloat(x[2], 64)
			s.sendT = time.Duration(secs * float64(time.Second))
			s.note = fmt.Sprintf("sent %s in %.2fs: %s/s; %s delayed (quiet hours, cap, hold), %s skipped, %s failed",
				humanize.Comma(int64(s.sent)), secs, humanize.Comma(int64(float64(s.sent)/max(secs, 1e-9))), x[9], x[6], x[3])
		}
		if x := tickLine.FindStringSubmatch(m.Out); x != nil {
			s.note += fmt.Sprintf("; its sweep %ss", x[4])
		}
		r.steps = append(r.steps, s)
		return nil
	}
	if err := send("send, default pool", sendEnv, asOf); err != nil {
		return nil, err
	}
	// 5. A second tick a simulated day later.
	if err := send("second tick (+1 day)", sendEnv, asOf.Add(24*time.Hour)); err != nil {
		return nil, err
	}
	wideEnv := map[string]string{"DATABASE_URL": wide.URL, "WAYMARK_SMTP_URL": smtpURL + "&pool=" + strconv.Itoa(f.wide), "WAYMARK_FROM": f.sendFrom}
	if err := send(fmt.Sprintf("send, %d connections", f.wide), wideEnv, asOf); err != nil {
		return nil, err
	}
	printSize(out, r)
	return r, nil
}

// copyBaseline writes the contacts, identities and events stored in the
// database at url to files (server side), and returns how long
// PostgreSQL takes to COPY them back into tables with the same columns
// and indexes: the floor of any import that stores those rows.
func copyBaseline(ctx context.Context, url, dir string) (time.Duration, error) {
	tables := []string{"contacts", "identities", "events"}
	var out, create, load, drop []string
	for _, t := range tables {
		file := quote(filepath.Join(dir, t+".copy"))
		out = append(out, "COPY "+t+" TO "+file)
		create = append(create, "CREATE TABLE bench_"+t+" (LIKE "+t+" INCLUDING ALL)")
		load = append(load, "COPY bench_"+t+" FROM "+file)
		drop = append(drop, "DROP TABLE bench_"+t)
	}
	if _, err := sql(ctx, url, append(out, create...)...); err != nil {
		return 0, err
	}
	defer func() {
		for _, t := range tables {
			os.Remove(filepath.Join(dir, t+".copy"))
		}
	}()
	_ = bench.Checkpoint(ctx, url)
	d, err := sql(ctx, url, load...)
	if err != nil {
		return 0, err
	}
	if _, err := sql(ctx, url, drop...); err != nil {
		return 0, err
	}
	return d, nil
}

// tickBaseline is PostgreSQL doing the first tick's work as plain SQL, in
// a transaction rolled back: one GROUP BY of every contact's events for
// the aggregates the journey reads, the tick's history rows inserted
// again, one UPDATE moving every moved contact (back to where it was:
// the same rows rewritten, the same indexes changed), one INSERT each of
// the enrolments, their first sends and the offer draws, and the
// conversions: every goal event of the history with its stage then and
// the last human open or click within the goal's window before it (the
// first tick attributes the imported history's orders), into tables with
// the same indexes.
func tickBaseline(ctx context.Context, url string, j *journey.Journey, asOf time.Time) (time.Duration, error) {
	var progs []*rule.Program
	for _, p := range j.Programs {
		progs = append(progs, p)
	}
	for _, o := range j.Offers {
		p, err := rule.Compile(o.When, rule.CompileOptions{})
		if err != nil {
			return 0, err
		}
		progs = append(progs, p)
	}
	for _, s := range j.Sequences {
		if s.Trigger.When != "" {
			p, err := rule.Compile(s.Trigger.When, rule.CompileOptions{})
			if err != nil {
				return 0, err
			}
			progs = append(progs, p)
		}
	}
	groupBy, args := store.FactsBaselineSQL(rule.Needs(progs...), asOf)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	for _, t := range []string{"transitions", "enrolments", "sends", "offer_draws", "conversions"} {
		if _, err := tx.Exec(ctx, "CREATE TABLE bench_"+t+" (LIKE "+t+" INCLUDING ALL)"); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM (`+groupBy+`) g`, args...); err != nil {
		return 0, fmt.Errorf("GROUP BY: %w", err)
	}
	for _, s := range []string{
		`INSERT INTO bench_transitions (contact_id, from_stage, to_stage, rule, rule_version, observed, trigger, at)
		 SELECT contact_id, from_stage, to_stage, rule, rule_version, observed, trigger, at FROM transitions`,
		`UPDATE contacts c SET stage = p.stage, stage_entered_at = p.stage_entered_at, updated_at = now()
		 FROM bench_pre p WHERE p.id = c.id AND (p.stage, p.stage_entered_at) IS DISTINCT FROM (c.stage, c.stage_entered_at)`,
		`INSERT INTO bench_enrolments (contact_id, sequence, version, enrolled_at) SELECT contact_id, sequence, version, enrolled_at FROM enrolments`,
		`INSERT INTO bench_sends (contact_id, enrolment_id, sequence, step, template, due_at, offer, offer_code, offer_expires)
		 SELECT contact_id, enrolment_id, sequence, step, template, due_at, offer, offer_code, offer_expires FROM sends`,
		`INSERT INTO bench_offer_draws SELECT * FROM offer_draws`,
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			return 0, fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	g := j.Conversion
	if _, err := tx.Exec(ctx, `INSERT INTO bench_conversions (contact_id, message_id, event, occurred_at, value, stage, send_id, touch, touch_at, reason)
		 SELECT e.contact_id, e.message_id, e.name, e.occurred_at, coalesce(e.properties->>@value, '0')::numeric,
		        coalesce((SELECT t.to_stage FROM transitions t WHERE t.contact_id = e.contact_id AND t.at <= e.occurred_at ORDER BY t.at DESC LIMIT 1), c.stage),
		        o.send_id, o.touch, o.at, CASE WHEN o.send_id IS NULL THEN 'not credited' ELSE 'credited' END
		 FROM events e JOIN contacts c ON c.id = e.contact_id
		 LEFT JOIN LATERAL (
		     SELECT (x.properties->>'send_id')::bigint AS send_id, CASE WHEN x.name = 'email_clicked' THEN 'clicked' ELSE 'opened' END AS touch, x.occurred_at AS at
		     FROM events x WHERE x.contact_id = e.contact_id AND x.name IN ('email_opened', 'email_clicked') AND x.kind = 'internal'
		       AND NOT x.properties @> '{"machine": true}' AND x.occurred_at > e.occurred_at - @window::interval AND x.occurred_at <= e.occurred_at
		     ORDER BY x.occurred_at DESC, x.name = 'email_clicked' DESC LIMIT 1) o ON true
		 WHERE e.name = @event`, pgx.NamedArgs{"event": g.Event, "value": g.Value, "window": g.Window.String()}); err != nil {
		return 0, fmt.Errorf("conversions: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// cloneDatabase copies db file by file into a new database called name.
func cloneDatabase(ctx context.Context, server string, db *bench.Database, name string) (*bench.Database, error) {
	clone, err := bench.CreateDatabase(ctx, server, name)
	if err != nil {
		return nil, err
	}
	if err := clone.Drop(ctx); err != nil {
		return nil, err
	}
	_, err = sql(ctx, server, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+` TEMPLATE `+pgx.Identifier{db.Name}.Sanitize()+` STRATEGY FILE_COPY`)
	if err != nil {
		return nil, fmt.Errorf("copying %s: %w", db.Name, err)
	}
	return clone, nil
}

func printSize(out io.Writer, r *sizeResult) {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "step\twall\tµs/contact\twaymark CPU\tPostgreSQL CPU\tpeak RSS\tPostgreSQL alone\twaymark ÷ alone\t")
	for _, s := range r.steps {
		base, ratio := "", ""
		if s.base > 0 {
			base, ratio = secs(s.base), fmt.Sprintf("%.2fx", s.m.Wall.Seconds()/s.base.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t\n", s.name, secs(s.m.Wall), us(s.m.Wall, r.n), secs(s.m.CPU), secs(s.m.PG), mb(s.m.RSS), base, ratio)
	}
	tw.Flush()
	for _, s := range r.steps {
		if s.note != "" {
			fmt.Fprintf(out, "  %s: %s\n", s.name, s.note)
		}
	}
	fmt.Fprintln(out)
}

// summary prints each step's µs per contact at every size, how it grew
// from the smallest to the largest, and the targets.
func summary(out io.Writer, rs []*sizeResult) {
	if len(rs) == 0 {
		return
	}
	first, last := rs[0], rs[len(rs)-1]
	fmt.Fprintln(out, "── µs per contact by size ──")
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	head := "step\t"
	for _, r := range rs {
		head += humanize.Comma(int64(r.n)) + "\t"
	}
	fmt.Fprintln(tw, head+"largest ÷ smallest\t")
	for _, s := range first.steps {
		line := s.name + "\t"
		for _, r := range rs {
			if x := r.step(s.name); x != nil {
				line += fmt.Sprintf("%.1f\t", us(x.m.Wall, r.n))
			} else {
				line += "\t"
			}
		}
		if x := last.step(s.name); x != nil && len(rs) > 1 {
			line += fmt.Sprintf("%.2f\t", us(x.m.Wall, last.n)/us(s.m.Wall, first.n))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintln(out, "\n── targets, at the largest size ──")
	check := func(ok bool, what string, args ...any) {
		mark := "✗"
		if ok {
			mark = "✓"
		}
		fmt.Fprintf(out, "%s %s\n", mark, fmt.Sprintf(what, args...))
	}
	if len(rs) > 1 {
		for _, s := range first.steps {
			if x := last.step(s.name); x != nil && s.name != "apply" {
				g := us(x.m.Wall, last.n) / us(s.m.Wall, first.n)
				check(g <= targetLinear, "%s linear: %.2fx the µs per contact of %s at %s (target ≤ %.1fx)", s.name, g, humanize.Comma(int64(first.n)), humanize.Comma(int64(last.n)), targetLinear)
			}
		}
	}
	for _, name := range []string{"import, JSON lines", "import, CSV"} {
		if x := last.step(name); x != nil {
			g := x.m.Wall.Seconds() / x.base.Seconds()
			check(g <= targetImport, "%s: %.2fx PostgreSQL's COPY of the same rows (target ≤ %.1fx)", name, g, targetImport)
			check(x.m.RSS>>20 < targetImportRSS, "%s: peak RSS %s (target < %d MB)", name, mb(x.m.RSS), targetImportRSS)
		}
	}
	if x := last.step("first tick (settle, enrol, draw)"); x != nil {
		g := x.m.Wall.Seconds() / x.base.Seconds()
		check(g <= targetTick, "first tick: %.2fx PostgreSQL doing the same work as plain SQL (target ≤ %.1fx)", g, targetTick)
	}
	for _, s := range last.steps {
		if !strings.HasPrefix(s.name, "send, ") || s.sendT <= 0 {
			continue
		}
		rate := float64(s.sent) / s.sendT.Seconds()
		target := targetSendWide
		if s.name == "send, default pool" {
			target = targetSendPool
		}
		check(rate >= float64(target), "%s: %s emails/s (target ≥ %s)", s.name, humanize.Comma(int64(rate)), humanize.Comma(int64(target)))
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
