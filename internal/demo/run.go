package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/waymark/waymark/examples"
	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/capture"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/stats"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/web"
	"github.com/waymark/waymark/rule"
)

// RunOptions are the demo's own settings (the rest is config.Config).
type RunOptions struct {
	Contacts int
	History  time.Duration // simulated history before now
	Duration time.Duration // wall-clock time to play it in
	Seed     uint64
	Journey  string        // a journey file; "" = the embedded example
	Exit     bool          // stop once the history is played and what is due is sent
	Progress time.Duration // how often to print a progress line
	Verbose  bool
	// HTTPExplicit: the address was chosen by the user, so a busy port
	// is an error rather than a reason to pick another.
	HTTPExplicit bool
}

// Result is what a finished demo leaves behind, for tests.
type Result struct {
	DatabaseURL string
	Addr        string
	APIKey      string
	Capture     *capture.Server // nil when WAYMARK_SMTP_URL was set
	Final       stats.DemoFigures
}

// Run is `waymark demo`: database, migrations, the journey, captured
// mail, Waymark (internal/app) on the simulation's clock, and the
// simulation; what it says goes to stdout, its log to stderr.
func Run(ctx context.Context, cfg *config.Config, o RunOptions, stdout, stderr io.Writer) (*Result, error) {
	level := slog.LevelWarn
	if o.Verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	out := stdout
	res := &Result{}
	if cfg.WriteKey == "" {
		cfg.WriteKey = randomKey("wk_")
	}
	if cfg.From == "" {
		cfg.From = "Fernwood Supply <hello@fernwoodsupply.example>"
	}
	if cfg.Secret == "" {
		cfg.Secret = randomKey("")
	}
	if cfg.PostalAddress == "" {
		cfg.PostalAddress = "Fernwood Supply, 1200 NW Alder Street, Portland, OR 97209, USA (a demo address)"
	}

	// The database: the demo's own, fresh, unless DATABASE_URL names one
	// (which must then hold no contacts: the demo brings its own).
	fresh := false
	if cfg.DatabaseURL == "" {
		dataDir := cfg.DataDir
		if dataDir == "" {
			dataDir = pgserver.DefaultDataDir()
		}
		base, err := pgserver.Resolve(ctx, "", dataDir, log)
		if err != nil {
			return nil, err
		}
		// Refused while another demo runs on it: dropping it would swap
		// that demo's data for this one's under its feet.
		claim, err := FreshDatabase(ctx, base, Database)
		if err != nil {
			return nil, err
		}
		defer claim.Release()
		cfg.DatabaseURL = claim.URL
		fresh = true
	}
	res.DatabaseURL = cfg.DatabaseURL
	pool, err := app.Connect(ctx, cfg, log, 0)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	st := store.New(pool)
	if !fresh {
		claim, err := ClaimDatabase(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		defer claim.Release()
		n, err := st.ContactCount(ctx)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, fmt.Errorf("demo: the database in DATABASE_URL already has %d contacts; the demo simulates its own customers and needs an empty database (unset DATABASE_URL and the demo uses a fresh %q database of its own)", n, Database)
		}
	}

	// The journey.
	j, jname, err := LoadJourney(o.Journey)
	if err != nil {
		return nil, err
	}
	if _, err := st.ApplyJourney(ctx, j, false); err != nil {
		return nil, fmt.Errorf("demo: applying %s: %w", jname, err)
	}

	// Mail: captured here unless WAYMARK_SMTP_URL says where to send it.
	if cfg.SMTP == nil {
		c, err := capture.Start(ctx, capture.Options{Log: log})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		res.Capture = c
		cfg.SMTPURL = c.URL()
		if cfg.SMTP, err = config.ParseSMTPURL(cfg.SMTPURL); err != nil {
			return nil, err
		}
	}

	// The address, known before the server starts so that links in the
	// emails point at it.
	if cfg.HTTPAddr, err = listenAddr(cfg.HTTPAddr, o.HTTPExplicit); err != nil {
		return nil, err
	}
	res.Addr = cfg.HTTPAddr
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + cfg.HTTPAddr
	}
	if res.APIKey, err = st.CreateAPIKey(ctx, "demo "+time.Now().UTC().Format("2006-01-02 15:04:05.000")); err != nil {
		return nil, fmt.Errorf("demo: creating an API key: %w", err)
	}

	// The simulation's clock, which the whole server runs on.
	end := clock.Now().UTC().Truncate(time.Second)
	start := end.Add(-o.History)
	pop, err := Generate(o.Seed, o.Contacts, start, end, 30*24*time.Hour)
	if err != nil {
		return nil, err
	}
	clock := NewClock(start)

	var mail func(ctx context.Context) ([]web.Mail, error)
	if res.Capture != nil {
		mail = capturedMail(res.Capture)
	}
	// The sender runs in step with the simulation (never while events are
	// being posted), on the simulation's clock; live, it runs on its own.
	ready := make(chan struct{})
	a, err := app.New(ctx, app.Config{Settings: cfg, Pool: pool, Log: log, Now: clock.Now, Mail: mail, CallerSends: true,
		Ready: func(string) { close(ready) }})
	if err != nil {
		return nil, err
	}
	sender := a.Sender()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- a.Run(sctx) }()
	select {
	case <-ready:
	case err := <-errc:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	base := "http://" + cfg.HTTPAddr

	fmt.Fprintf(out, "Waymark demo: Fernwood Supply (%s), %s simulated customers, %d days of history played in about %s.\n\n",
		jname, humanize.Comma(int64(o.Contacts)), int(o.History.Hours()/24), o.Duration.Round(time.Second))
	fmt.Fprintf(out, "  dashboard   %s/dashboard/  (log in with the API key)\n", base)
	fmt.Fprintf(out, "  API key     %s\n", res.APIKey)
	fmt.Fprintf(out, "  ingestion   %s/v1/batch  (write key %s)\n", base, cfg.WriteKey)
	if res.Capture != nil {
		fmt.Fprintf(out, "  mail        captured by the built-in SMTP server on %s, shown at %s/dashboard/mail (nothing leaves this machine)\n", res.Capture.Addr(), base)
	} else {
		fmt.Fprintf(out, "  mail        sent to %s:%d (WAYMARK_SMTP_URL)\n", cfg.SMTP.Host, cfg.SMTP.Port)
	}
	fmt.Fprintf(out, "  database    %s%s\n\n", pgserver.Redact(cfg.DatabaseURL), map[bool]string{true: " (fresh for this run)"}[fresh])
	fmt.Fprintf(out, "Personas: %s.\n", personaSummary(pop))
	fmt.Fprintf(out, "The clock starts at %s; events carry simulated times, and rules, sweeps and sends run as of the simulated instant.\n\n", start.Format("2006-01-02"))

	sendDue := func(ctx context.Context) error {
		// A look at the queue is much cheaper than a sender pass.
		if at, ok, err := st.NextDue(ctx); err != nil || !ok || at.After(clock.Now()) {
			return err
		}
		_, err := sender.SendDue(ctx)
		return err
	}
	began := time.Now()
	sim, err := New(Options{
		IngestURL: base, WriteKey: cfg.WriteKey, Population: pop, Start: start, End: end, Duration: o.Duration,
		Clock: clock, Send: sendDue, Live: !o.Exit, Log: log, Mailbox: res.Capture,
		Pass: func(ctx context.Context) error {
			if !a.Tick(ctx) {
				return errors.New("another instance holds the scheduler lease")
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}

	// Progress, every few seconds.
	var progressWG sync.WaitGroup
	pctx, stopProgress := context.WithCancel(sctx)
	defer stopProgress()
	if o.Progress > 0 {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			t := time.NewTicker(o.Progress)
			defer t.Stop()
			last := ""
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
				}
				f, err := st.DemoFigures(pctx, clock.Now())
				if err != nil {
					if pctx.Err() == nil {
						log.Warn("demo: reading figures", "err", err)
					}
					continue
				}
				ss := sim.Status()
				line := progressLine(ss, f, res.Capture)
				// Live, a line only when something changed.
				body := line[strings.Index(line, "]")+1:]
				if ss.CaughtUp && body == last {
					continue
				}
				last = body
				fmt.Fprintln(out, line)
			}
		}()
	}

	caught := make(chan error, 1)
	go func() { caught <- sim.Run(sctx) }()
	var simErr error
	simDone := false
	waitSim := func() error {
		if !simDone {
			simErr, simDone = <-caught, true
		}
		return simErr
	}
	waitCaughtUp := func() error {
		for {
			select {
			case err := <-caught:
				simErr, simDone = err, true
				if err == nil && !sim.Status().CaughtUp {
					err = errors.New("the simulation stopped before the history was played")
				}
				return err
			case err := <-errc:
				if err == nil {
					err = errors.New("the server stopped")
				}
				return err
			case <-time.After(100 * time.Millisecond):
				if sim.Status().CaughtUp {
					return nil
				}
			}
		}
	}
	if err := waitCaughtUp(); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	f, err := drain(sctx, st, clock, res.Capture, sendDue, 60*time.Second)
	if err != nil {
		return nil, err
	}
	// The dashboard's figures, /api/v1/stats and the reports include the
	// whole history now, not at the refresher's next turn (up to 30 s
	// later).
	if err := refreshStats(sctx, st, clock.Now()); err != nil {
		log.Warn("demo: refreshing the dashboard's figures", "err", err)
	}
	if err := app.RefreshReports(sctx, st, clock.Now(), false); err != nil {
		log.Warn("demo: refreshing the reports", "err", err)
	}
	fmt.Fprintf(out, "\nHistory played in %s. %s\n", time.Since(began).Round(100*time.Millisecond), progressLine(sim.Status(), f, res.Capture))
	fmt.Fprintln(out, checklist(f))
	if o.Verbose {
		ss := sim.Status()
		fmt.Fprintf(out, "(%d events posted in %s, %d scheduled passes took %s, sending %s)\n", ss.Posted, ss.PostTook.Round(time.Millisecond), ss.Passes, ss.PassTook.Round(time.Millisecond), ss.SendTook.Round(time.Millisecond))
	}
	res.Final = f
	if o.Exit {
		stopProgress()
		progressWG.Wait()
		stop()
		if err := <-errc; err != nil {
			return res, err
		}
		if err := waitSim(); err != nil {
			return res, err
		}
		if res.Final, err = st.DemoFigures(ctx, clock.Now()); err != nil {
			return res, err
		}
		return res, nil
	}
	// Live: the sender runs on its own (drain above no longer calls it).
	var senderWG sync.WaitGroup
	senderWG.Add(1)
	go func() { defer senderWG.Done(); sender.Run(sctx, 2*time.Second) }()
	defer senderWG.Wait()
	fmt.Fprintln(out, "\nThe demo goes on in real time (the same customers keep browsing and buying). Press Ctrl-C to stop.")
	var simc <-chan error = caught
	if simDone {
		simc = nil
	}
	select {
	case err := <-errc:
		return res, err
	case err := <-simc:
		simErr, simDone = err, true
		if err != nil && ctx.Err() == nil {
			return res, fmt.Errorf("demo: %w", err)
		}
		<-ctx.Done()
	case <-ctx.Done():
	}
	stopProgress()
	progressWG.Wait()
	stop()
	if err := <-errc; err != nil {
		return res, err
	}
	if err := waitSim(); err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	return res, nil
}

// capturedMail lists what the capture server keeps for the dashboard,
// newest first.
func capturedMail(c *capture.Server) func(ctx context.Context) ([]web.Mail, error) {
	return func(context.Context) ([]web.Mail, error) {
		list := c.List(0, 0) // all it keeps: the dashboard pages and searches them
		out := make([]web.Mail, len(list))
		for i, m := range list {
			date := m.Date
			if date.IsZero() {
				date = m.ReceivedAt
			}
			out[i] = web.Mail{ID: strconv.FormatInt(m.ID, 10), From: m.From, To: m.EnvelopeTo, Subject: m.Subject, Date: date, Text: m.Text, HTML: m.HTML}
		}
		return out, nil
	}
}

// drain waits until no email is due or on the wire and, with the capture
// server, until it received every email sent.
func drain(ctx context.Context, st *store.Store, clock *Clock, c *capture.Server, send func(context.Context) error, limit time.Duration) (stats.DemoFigures, error) {
	deadline := time.Now().Add(limit)
	for {
		if err := send(ctx); err != nil {
			return stats.DemoFigures{}, err
		}
		f, err := st.DemoFigures(ctx, clock.Now())
		if err != nil {
			return f, err
		}
		if f.Due == 0 && f.Sending == 0 && (c == nil || c.Received() == f.Sent) {
			return f, nil
		}
		if time.Now().After(deadline) {
			recv := int64(-1)
			if c != nil {
				recv = c.Received()
			}
			return f, fmt.Errorf("demo: after %s, %d emails are still due and %d on the wire (sent %d, captured %d)", limit, f.Due, f.Sending, f.Sent, recv)
		}
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// refreshStats brings the dashboard's rollups up to date, waiting for a
// refresh already running (it holds their lock) to finish.
func refreshStats(ctx context.Context, st *store.Store, now time.Time) error {
	for try := 0; ; try++ {
		ran, err := st.RefreshStats(ctx, now, false)
		if err != nil || ran || try == 50 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LoadJourney loads the journey file, or the embedded example.
func LoadJourney(path string) (*journey.Journey, string, error) {
	if path != "" {
		j, err := journey.Load(path)
		return j, path, err
	}
	// The example names its HTML parts by relative path: write it out to
	// a temporary directory and load it from there.
	dir, err := os.MkdirTemp("", "waymark-demo-journey-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	err = fs.WalkDir(examples.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if err == nil && p != "." {
				err = os.MkdirAll(filepath.Join(dir, p), 0o755)
			}
			return err
		}
		b, err := examples.FS.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		return nil, "", fmt.Errorf("demo: unpacking the example journey: %w", err)
	}
	j, err := journey.Load(filepath.Join(dir, examples.Journey))
	if err != nil {
		return nil, "", fmt.Errorf("demo: the embedded example journey: %w", err)
	}
	return j, "examples/" + examples.Journey, nil
}

// listenAddr checks that addr can be listened on; when it is busy and was
// not chosen explicitly, a free port is used instead.
func listenAddr(addr string, explicit bool) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if explicit {
			return "", &config.Error{Var: "WAYMARK_HTTP_ADDR", Msg: err.Error()}
		}
		host, _, _ := net.SplitHostPort(addr)
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			return "", &config.Error{Var: "WAYMARK_HTTP_ADDR", Msg: err.Error()}
		}
	}
	a := ln.Addr().String()
	ln.Close()
	return a, nil
}

func personaSummary(p *Population) string {
	n := map[Persona]int{}
	business := 0
	for _, c := range p.Contacts {
		n[c.Persona]++
		if c.Business {
			business++
		}
	}
	var parts []string
	for _, ps := range Personas {
		parts = append(parts, fmt.Sprintf("%s %s", humanize.Comma(int64(n[ps])), ps.Plural()))
	}
	parts = append(parts, fmt.Sprintf("%s of them buying for a business", humanize.Comma(int64(business))))
	return strings.Join(parts, ", ")
}

var tones = []string{"friendly", "formal", "empathetic", "celebratory"}

func progressLine(s Status, f stats.DemoFigures, c *capture.Server) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] ", s.Now.UTC().Format("2006-01-02 15:04"))
	var total int64
	var stages []string
	for _, st := range rule.Stages {
		total += f.Stages[st]
		stages = append(stages, fmt.Sprintf("%s %s", st, humanize.Comma(f.Stages[st])))
	}
	fmt.Fprintf(&b, "%s contacts: %s | %s emails sent:", humanize.Comma(total), strings.Join(stages, ", "), humanize.Comma(f.Sent))
	for i, t := range tones {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %s", t, humanize.Comma(f.SentByTone[t]))
	}
	fmt.Fprintf(&b, " | win-back %s, offers %s, held %s | opened %s, clicked %s, unsubscribed %s", humanize.Comma(f.WinBacks), humanize.Comma(f.OfferEmails), humanize.Comma(f.Held),
		humanize.Comma(f.Opened), humanize.Comma(f.Clicked), humanize.Comma(f.Unsubscribed))
	if c != nil {
		fmt.Fprintf(&b, " | captured %s", humanize.Comma(c.Received()))
	}
	if !s.CaughtUp && (s.SweepEvery > 24*time.Hour || s.SendEvery > 2*time.Hour) {
		fmt.Fprintf(&b, " | a pass every %d days, sending every %d hours", s.SweepEvery/(24*time.Hour), s.SendEvery/time.Hour)
	}
	return b.String()
}

// checklist says which of the demo's promises the figures keep.
func checklist(f stats.DemoFigures) string {
	mark := func(ok bool) string { return map[bool]string{true: "✓", false: "✗"}[ok] }
	every := true
	for _, st := range rule.Stages {
		every = every && f.Stages[st] > 0
	}
	four := true
	for _, t := range tones {
		four = four && f.SentByTone[t] > 0
	}
	return fmt.Sprintf("%s contacts in every stage  %s all four tones used  %s a win-back sent (%d)  %s a surprise offer sent (%d)  %s a broadcast sent (%d)",
		mark(every), mark(four), mark(f.WinBacks > 0), f.WinBacks, mark(f.SentByTemplate["surprise"] > 0), f.SentByTemplate["surprise"],
		mark(f.SentByTemplate["journal"] > 0), f.SentByTemplate["journal"])
}

func randomKey(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
