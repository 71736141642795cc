package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/bench"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/mailer"
	"github.com/waymark/waymark/migrations"
	"github.com/waymark/waymark/templates"
)

// Targets of the send benchmark.
const (
	targetSendFloor     = 2_000 // emails/s from tick, any body (campaigns issue)
	targetSendShort     = 8_000 // emails/s, short text email
	targetSendNewslettr = 5_000 // emails/s, ~5.5 KB HTML newsletter
	targetSendBareRatio = 1.25  // tick's send time / the bare go-mail loop's
)

// cmdBenchSend measures sending as `waymark tick` does it, into Postfix's
// smtp-sink, against smtp-source and a bare go-mail loop in the same run:
//
//	waymark-bench send [-emails 20000 -connections 8 -body short|newsletter -keep]
//
// -connections takes a list (4,8,16): each count gets its own fresh
// database. Nothing is installed: smtp-sink and smtp-source come with
// Postfix (Debian: apt-get install postfix).
func cmdBenchSend(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("send", &cfg)
	emails := fs.Int("emails", 20_000, "contacts, each due one email")
	connList := fs.String("connections", "64", "SMTP connections (the sender's pool=, smtp-source -s, bare clients); a comma-separated list runs each")
	body := fs.String("body", "short", "the email: short (text) or newsletter (HTML the size of listmonk's default template, + text)")
	keep := fs.Bool("keep", false, "keep the scratch database(s)")
	dbConns := fs.Int("db-conns", 4, "PostgreSQL pool size of the sender (waymark tick uses 4)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the send phase to `file` (with several connection counts: file.N)")
	sqlStats := fs.Bool("sql-stats", false, "trace the sender's SQL: count and client-side time per statement")
	noSource := fs.Bool("no-smtp-source", false, "skip the smtp-source baselines")
	dkim := fs.String("dkim", "", "sign every email with DKIM: rsa (2048-bit) or ed25519, with a key generated for the run (empty: no signing)")
	mode := fs.String("mode", "tick", "tick: the sender as waymark tick runs it, in this process, next to smtp-source and a bare go-mail loop; "+
		"serve: a `waymark serve` process sends the due emails (rate and peak RSS); "+
		"latency: events posted to a `waymark serve` process at -rate per second for -duration, each making a 0-delay email due (event to SMTP-accept latency)")
	bin := fs.String("waymark", "", "serve, latency: the waymark binary (default: built from ./cmd/waymark)")
	rate := fs.Float64("rate", 50, "latency: events per second")
	duration := fs.Duration("duration", 10*time.Second, "latency: how long to post events")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench send: unexpected argument %q", fs.Arg(0))
	}
	var conns []int
	for _, s := range strings.Split(*connList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("bench send: -connections %q: want numbers from 1 to 1000", *connList)
		}
		conns = append(conns, n)
	}
	if *emails <= 0 || *dbConns <= 0 {
		return errors.New("bench send: -emails and -db-conns must be positive")
	}
	jsrc, err := bench.SendJourney(*body)
	if err != nil {
		return fmt.Errorf("bench send: -body: %w", err)
	}
	if *mode != "tick" && *mode != "serve" && *mode != "latency" {
		return fmt.Errorf("bench send: -mode %q: want tick, serve or latency", *mode)
	}
	if *rate <= 0 || *duration <= 0 {
		return errors.New("bench send: -rate and -duration must be positive")
	}
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	if *dkim != "" {
		keyFile, err := bench.DKIMKeyFile(*dkim)
		if err != nil {
			return fmt.Errorf("bench send: -dkim: %w", err)
		}
		defer os.Remove(keyFile)
		cfg.DKIMDomain, cfg.DKIMSelector, cfg.DKIMKeyFile = "fernwood.example", "bench", keyFile
	}
	for _, t := range []string{"smtp-sink", "smtp-source"} {
		if _, err := bench.PostfixTool(t); err != nil {
			return fmt.Errorf("bench send: %w", err)
		}
	}
	server, log, err := e.server(ctx, &cfg)
	if err != nil {
		return err
	}
	sink, err := bench.StartSink(ctx)
	if err != nil {
		return fmt.Errorf("bench send: %w", err)
	}
	defer sink.Stop()
	if *mode != "tick" && *bin == "" {
		// The serve modes run `waymark serve` as a user would.
		dir, err := os.MkdirTemp("", "waymark-bench-send-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if *bin, err = build(ctx, dir); err != nil {
			return err
		}
	}
	out := e.stdout
	signed := "no DKIM"
	if *dkim != "" {
		signed = "DKIM " + *dkim
	}
	fmt.Fprintf(out, "waymark-bench send -mode %s: %d emails, body %s, %s, PostgreSQL at %s, GOMAXPROCS %d, %d CPUs\n",
		*mode, *emails, *body, signed, pgserver.Redact(server), runtime.GOMAXPROCS(0), runtime.NumCPU())
	if *mode == "latency" {
		return benchSendLatency(ctx, e, *bin, server, cfg, *rate, *duration, *keep)
	}
	fmt.Fprintf(out, "sink: %s\n", sink.Command())
	var failed []string
	for _, c := range conns {
		r := &sendRun{e: e, out: out, log: log, server: server, sink: sink, cfg: cfg, journey: jsrc, body: *body,
			emails: *emails, conns: c, dbConns: *dbConns, keep: *keep, sqlStats: *sqlStats, noSource: *noSource, serve: *mode == "serve", bin: *bin}
		if *cpuprofile != "" {
			r.profile = *cpuprofile
			if len(conns) > 1 {
				r.profile += "." + strconv.Itoa(c)
			}
		}
		miss, err := r.run(ctx)
		if err != nil {
			return err
		}
		failed = append(failed, miss...)
	}
	printTargets(out, failed)
	return nil
}

type sendRun struct {
	e       *env
	out     io.Writer
	log     *slog.Logger
	server  string
	sink    *bench.Sink
	cfg     config.Config
	journey string
	body    string
	emails  int
	conns   int
	dbConns int
	keep    bool
	profile string

	sqlStats bool
	noSource bool
	serve    bool   // send with a `waymark serve` process
	bin      string // the waymark binary it runs
}

// run measures one connection count on a fresh database; it returns the
// targets missed.
func (r *sendRun) run(ctx context.Context) ([]string, error) {
	out := r.out
	fmt.Fprintf(out, "\n== %d connections ==\n", r.conns)
	db, err := bench.CreateDatabase(ctx, r.server, bench.DefaultName("send"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if r.keep {
			fmt.Fprintf(out, "kept database %s\n", db.Name)
			return
		}
		if err := db.Drop(context.Background()); err != nil {
			fmt.Fprintf(r.e.stderr, "waymark-bench send: %v\n", err)
		}
	}()
	pcfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = int32(r.dbConns)
	tracer := &bench.SQLStats{}
	if r.sqlStats {
		pcfg.ConnConfig.Tracer = tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := migrations.Apply(ctx, pool); err != nil {
		return nil, err
	}

	// Setup: contacts, the journey, everyone enrolled (the sweep as tick
	// runs it, with the campaigns runner as its hook).
	start := time.Now()
	if err := bench.LoadSendContacts(ctx, pool, r.emails); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "contacts: %d loaded with COPY in %.2fs\n", r.emails, time.Since(start).Seconds())
	j, err := journey.Parse("bench-send.yaml", []byte(r.journey))
	if err != nil {
		return nil, fmt.Errorf("bench send: the journey: %w", err)
	}
	st := store.New(pool)
	if _, err := st.ApplyJourney(ctx, j, false); err != nil {
		return nil, err
	}
	// The application as tick runs it: the engine with the campaigns
	// runner as its hook, and the sender.
	cfg := r.cfg
	cfg.SMTPURL = fmt.Sprintf("smtp://%s?tls=none&pool=%d", r.sink.Addr(), r.conns)
	if cfg.From == "" {
		cfg.From = "Fernwood Supply <news@fernwood.example>"
	}
	if cfg.PostalAddress == "" {
		cfg.PostalAddress = "Fernwood Supply, 12 Trail Road, Portland, OR 97201"
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "https://fernwoodsupply.example"
	}
	if err := cfg.Load(func(string) string { return "" }); err != nil {
		return nil, err
	}
	a, err := app.New(ctx, app.Config{Settings: &cfg, Pool: pool, Log: r.log, Now: time.Now})
	if err != nil {
		return nil, err
	}
	sw, err := a.Sweep(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	var queued int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM sends WHERE status = 'queued'`).Scan(&queued); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "enrol (sweep + campaigns runner): %d contacts evaluated, %d sends queued in %.2fs (%.0f contacts/s)\n",
		sw.Contacts, queued, sw.Elapsed.Seconds(), float64(sw.Contacts)/max(sw.Elapsed.Seconds(), 1e-9))
	if queued != r.emails {
		return nil, fmt.Errorf("bench send: %d sends queued, want %d", queued, r.emails)
	}
	// What autovacuum would have done after 20,000 inserts, so that the
	// plans are the steady state's; and no checkpoint debt from the load.
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) sends, enrolments, contacts`); err != nil {
		return nil, err
	}
	bench.Checkpoint(ctx, db.URL)

	// The send phase, as tick runs it.
	if r.serve {
		return nil, r.sendWithServe(ctx, db.URL, &cfg, pool)
	}
	sender := a.Sender()
	defer a.Close()
	stopProfile := func() {}
	if r.profile != "" {
		pf, err := os.Create(r.profile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return nil, err
		}
		stopProfile = func() { pprof.StopCPUProfile(); pf.Close() }
	}
	tracer.Reset()
	sink0 := r.sink.CPU()
	backends0 := bench.DatabaseCPU(ctx, pool, db.Name)
	meter := bench.StartMeter()
	start = time.Now()
	ss, sendErr := sender.SendDue(ctx)
	sendEl := time.Since(start)
	use := meter.Stop()
	sinkCPU := r.sink.CPU() - sink0
	backends1 := bench.DatabaseCPU(ctx, pool, db.Name)
	stopProfile()
	if sendErr != nil {
		return nil, fmt.Errorf("bench send: sending: %w", sendErr)
	}
	counts := map[string]int{}
	rows, err := pool.Query(ctx, `SELECT status || coalesce('/' || tone, ''), count(*) FROM sends GROUP BY 1 ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	var statusLine []string
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		counts[strings.SplitN(s, "/", 2)[0]] += n
		statusLine = append(statusLine, fmt.Sprintf("%s %d", s, n))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sendRate := float64(ss.Sent) / sendEl.Seconds()
	fmt.Fprintf(out, "waymark (tick's sender, %d SMTP + %d PostgreSQL connections): sent %d in %.2fs = %.0f emails/s\n",
		r.conns, r.dbConns, ss.Sent, sendEl.Seconds(), sendRate)
	fmt.Fprintf(out, "  sends: %s\n", strings.Join(statusLine, ", "))
	fmt.Fprintf(out, "  cpu: %s; smtp-sink %.2f\n", cpuText(use), sinkCPU.Seconds()/sendEl.Seconds())
	// The pool's connections stay open through the send phase, so the
	// difference of two readings is their work; none read (a server on
	// another machine), no line.
	if n := float64(max(ss.Sent, 1)); len(backends0) > 0 {
		// Per email, and the backends of this database only: robust
		// to other work on the machine, unlike the rates.
		fmt.Fprintf(out, "  cpu per email: waymark %.0f us, this database's PostgreSQL backends %.0f us, smtp-sink %.0f us\n",
			use.Self*sendEl.Seconds()/n*1e6, bench.CPUSince(backends0, backends1).Seconds()/n*1e6, sinkCPU.Seconds()/n*1e6)
	}
	if counts["sent"] != r.emails || ss.Sent != r.emails {
		return nil, fmt.Errorf("bench send: %d sends 'sent' (sender says %d), want %d", counts["sent"], ss.Sent, r.emails)
	}
	if r.sqlStats {
		fmt.Fprintln(out, "  SQL (client-side time, summed over connections):")
		for _, x := range tracer.Top() {
			fmt.Fprintf(out, "    %8.3fs %7d × %7.3fms  %s\n", x.Total.Seconds(), x.Count, float64(x.Total.Microseconds())/1000/float64(x.Count), x.Name)
		}
	}

	// The same content, for the baselines: contact 1's email in the
	// friendly tone, with the sender's links.
	msg, err := r.sample(ctx, st, &cfg)
	if err != nil {
		return nil, err
	}
	size, err := msg.Size()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "message: %d bytes on the wire (text %d, html %d)\n", size, len(msg.Text), len(msg.HTML))

	type baseline struct {
		name string
		el   time.Duration
	}
	var bases []baseline
	if !r.noSource {
		for _, persistent := range []bool{true, false} {
			sink0 := r.sink.CPU()
			m := bench.StartMeter()
			sr, err := bench.SMTPSource(ctx, r.sink.Addr(), r.emails, r.conns, size, persistent)
			u := m.Stop()
			if err != nil {
				return nil, err
			}
			what := "persistent connections"
			if !persistent {
				what = "a new connection per message"
			}
			fmt.Fprintf(out, "smtp-source (%s): %d in %.2fs = %.0f emails/s  [%s]\n", what, r.emails, sr.Elapsed.Seconds(), float64(r.emails)/sr.Elapsed.Seconds(), sr.Command)
			fmt.Fprintf(out, "  cpu: smtp-source %.2f, smtp-sink %.2f, machine %.2f of %d\n", sr.CPU.Seconds()/sr.Elapsed.Seconds(),
				(r.sink.CPU()-sink0).Seconds()/sr.Elapsed.Seconds(), u.Machine, u.Cores)
			if persistent {
				bases = append(bases, baseline{"smtp-source -d", sr.Elapsed})
			} else {
				bases = append(bases, baseline{"smtp-source", sr.Elapsed})
			}
		}
	}
	sink0 = r.sink.CPU()
	m := bench.StartMeter()
	br, err := bench.BareGoMail(ctx, r.sink.Host, r.sink.Port, r.emails, r.conns, msg)
	u := m.Stop()
	if err != nil {
		return nil, fmt.Errorf("bench send: %w", err)
	}
	bareRate := float64(br.Sent) / br.Elapsed.Seconds()
	fmt.Fprintf(out, "bare go-mail loop (%d persistent clients, %d prebuilt messages, built in %.2fs untimed): %d in %.2fs = %.0f emails/s\n",
		r.conns, r.emails, br.Build.Seconds(), br.Sent, br.Elapsed.Seconds(), bareRate)
	fmt.Fprintf(out, "  cpu: this process and smtp-sink %.2f + %.2f, machine %.2f of %d\n", u.Self, (r.sink.CPU()-sink0).Seconds()/br.Elapsed.Seconds(), u.Machine, u.Cores)

	ratio := sendEl.Seconds() / br.Elapsed.Seconds()
	fmt.Fprintf(out, "summary %s %d conns: waymark %.0f/s, bare go-mail %.0f/s (waymark/bare time %.2fx)", r.body, r.conns, sendRate, bareRate, ratio)
	for _, b := range bases {
		fmt.Fprintf(out, ", %s %.0f/s", b.name, float64(r.emails)/b.el.Seconds())
	}
	fmt.Fprintln(out)
	var miss []string
	check := func(ok bool, what string) {
		mark := "ok  "
		if !ok {
			mark = "MISS"
			miss = append(miss, fmt.Sprintf("%s %d conns: %s", r.body, r.conns, what))
		}
		fmt.Fprintf(out, "  %s %s\n", mark, what)
	}
	check(sendRate >= targetSendFloor, fmt.Sprintf("≥ %d emails/s from tick (%.0f)", targetSendFloor, sendRate))
	want := targetSendShort
	if r.body == "newsletter" {
		want = targetSendNewslettr
	}
	check(sendRate >= float64(want), fmt.Sprintf("≥ %d emails/s for %s (%.0f)", want, r.body, sendRate))
	check(ratio <= targetSendBareRatio, fmt.Sprintf("≤ %.2fx the bare go-mail loop's time (%.2fx)", targetSendBareRatio, ratio))
	return miss, nil
}

// sample renders contact 1's email as the sender does, as the content of
// the baselines' messages.
func (r *sendRun) sample(ctx context.Context, st *store.Store, cfg *config.Config) (bench.BareMessage, error) {
	var m bench.BareMessage
	ts, err := st.Templates(ctx, []string{bench.SendTemplateName})
	if err != nil {
		return m, err
	}
	t, ok := ts[bench.SendTemplateName]
	if !ok {
		return m, errors.New("bench send: the template is missing")
	}
	c, err := templates.Compile(t.Template)
	if err != nil {
		return m, err
	}
	facts, err := st.LoadFacts(ctx, lifecycle.FactsQuery{IDs: []int64{1}, AsOf: time.Now()})
	if err != nil || len(facts) != 1 {
		return m, fmt.Errorf("bench send: loading contact 1: %v", err)
	}
	// Decorated as the sender decorates it: signed unsubscribe and
	// preferences links, RFC 8058 headers, footer, tracked links, pixel.
	dec, err := app.Decorator(ctx, cfg, st)
	if err != nil {
		return m, err
	}
	unsub, prefs := dec.Links(1, 1)
	data := &templates.Data{Contact: templates.Contact{Email: "cust-1@example.com", Traits: facts[0].Traits, Stage: string(facts[0].Stage)},
		UnsubscribeURL: unsub, PreferencesURL: prefs}
	rd, err := c.Render("friendly", data)
	if err != nil {
		return m, err
	}
	msg := &mailer.Message{ID: "1.1", From: cfg.From, To: "cust-1@example.com", Subject: rd.Subject, Text: rd.Text, HTML: rd.HTML}
	dec.DecorateLinks(msg, 1, 1, true, unsub, prefs)
	return bench.BareMessage{From: cfg.From, Subject: msg.Subject, Text: msg.Text, HTML: msg.HTML, Headers: msg.Headers, Date: time.Now()}, nil
}

func cpuText(u bench.CPUUse) string {
	pg := "?"
	if u.Postgres >= 0 {
		pg = fmt.Sprintf("%.2f", u.Postgres)
	}
	return fmt.Sprintf("machine %.2f of %d cores busy (this process %.2f, postgres %s, other %.2f), iowait %.2f",
		u.Machine, u.Cores, u.Self, pg, u.Other(), u.IOWait)
}
