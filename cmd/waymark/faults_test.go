package main

// Faults across processes: several `waymark serve` processes (the real
// binary) on one database, all of them down across scheduled ticks. Real
// PostgreSQL, a real SMTP server; every email is counted at the server by
// its Message-ID and in the sends table.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

// seedFaultJourney imports n contacts (u1…un) and applies journey.
func seedFaultJourney(t *testing.T, env map[string]string, n int, journey string) {
	t.Helper()
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("userId,email,first_name\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&csv, "u%d,u%d@example.com,U%d\n", i, i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "contacts.csv"), []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "journey.yaml"), []byte(journey), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"import", filepath.Join(dir, "contacts.csv")}, {"apply", "-f", filepath.Join(dir, "journey.yaml")}} {
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
}

const threeServeJourney = `sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0s, template: hello}
      - {after: 2s, template: tips}
  - name: cart
    trigger: {event: cart_updated}
    cooldown: 1d
    steps:
      - {after: 0s, template: cart}
      - {after: 1s, template: cart-again}
sending:
  frequency_cap: {max: 100, per: 1d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: hello, subject: "Hello {{.Contact.FirstName}}", text: "Welcome."}
  - {name: tips, subject: "Tips", text: "Tip one."}
  - {name: cart, subject: "Your cart", text: "Saved."}
  - {name: cart-again, subject: "Still there?", text: "Your cart."}
`

// Three serve processes share one database through a burst of sends (a
// sweep enrols every contact, a two-step sequence chains) and of events
// (each contact's cart event posted to all three at once, racing to enrol
// it): every (enrolment, step) is sent once, and every scheduled tick gets
// one pass across the three. When the leader stops, another takes over
// the ticks.
func TestFaultThreeServeProcessesShareOneDatabase(t *testing.T) {
	t.Parallel()
	const (
		contacts = 150
		carts    = 60
		every    = 2 * time.Second
	)
	bin := buildFaultBinary(t)
	url := pgtest.Clone(t)
	srv := smtptest.Start(t)
	env := map[string]string{
		"DATABASE_URL":     url,
		"WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none&pool=2", srv.Addr()),
		"WAYMARK_FROM":     "shop@shop.example",
		"WAYMARK_CRON":     "*/2 * * * * *", // on even seconds, the same instants in every process
	}
	seedFaultJourney(t, env, contacts, threeServeJourney)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	var procs []*serveProc
	for i := 1; i <= 3; i++ {
		procs = append(procs, startServeProc(t, bin, fmt.Sprintf("serve%d", i), env))
	}
	var bases []string
	for _, p := range procs {
		bases = append(bases, p.baseURL(t, 60*time.Second))
	}
	// Each cart event goes to all three processes at once, with different
	// message ids: three evaluations race to enrol the same contact.
	var wg sync.WaitGroup
	errs := make(chan error, carts*3)
	for i := 1; i <= carts; i++ {
		for j, base := range bases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"userId":"u%d","event":"cart_updated","messageId":"cart-%d-%d"}`, i, i, j)
				code, err := postEvent(context.Background(), base, body)
				if err == nil && code != 200 {
					err = fmt.Errorf("cart event for u%d to serve%d: status %d", i, j+1, code)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	want := contacts*2 + carts*2
	if !waitUntil(90*time.Second, func() bool { return sendCounts(t, pool)["sent"] >= want && srv.Count() >= want }) {
		t.Fatalf("after 90s: sends %v, %d messages received; want %d sent", sendCounts(t, pool), srv.Count(), want)
	}
	// Let a few more ticks pass: nothing more may go out.
	time.Sleep(3 * every)
	if c := sendCounts(t, pool); c["sent"] != want || len(c) != 1 {
		t.Errorf("sends by status %v, want only %d sent", c, want)
	}
	if n := checkDelivery(t, pool, srv); n != want {
		t.Errorf("the server received %d distinct messages, want %d", n, want)
	}
	var dupSteps, dupEnrolments int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT 1 FROM sends GROUP BY enrolment_id, step HAVING count(*) > 1) x`).Scan(&dupSteps); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT 1 FROM enrolments GROUP BY contact_id, sequence HAVING count(*) > 1) x`).Scan(&dupEnrolments); err != nil {
		t.Fatal(err)
	}
	if dupSteps != 0 || dupEnrolments != 0 {
		t.Errorf("%d (enrolment, step) pairs with more than one send, %d contacts enrolled twice in a sequence", dupSteps, dupEnrolments)
	}
	var cartEnrolments int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM enrolments WHERE sequence = 'cart'`).Scan(&cartEnrolments)
	if cartEnrolments != carts {
		t.Errorf("%d cart enrolments, want %d (one per contact whatever the races)", cartEnrolments, carts)
	}

	// The leader stops (releasing the lease); another process takes the
	// next ticks.
	before := passes(t, procs...)
	leaderHolder := before[len(before)-1].holder
	var leader *serveProc
	var rest []*serveProc
	for _, p := range procs {
		if strings.Contains(leaderHolder, p.pidMark()) {
			leader = p
		} else {
			rest = append(rest, p)
		}
	}
	if leader == nil {
		t.Fatalf("no process has the holder %s", leaderHolder)
	}
	for _, p := range before {
		if p.holder != leaderHolder {
			t.Errorf("before the leader stopped, %s (%s) also ran a pass at %s", p.proc, p.holder, p.tick.Format("15:04:05.000"))
		}
	}
	stopping := clock.Now() // the processes' clock, which their logged ticks are in
	leader.stop(t)
	stoppedAt := clock.Now()
	if !waitUntil(30*time.Second, func() bool {
		n := 0
		for _, p := range passes(t, rest...) {
			if p.tick.After(stoppedAt) {
				n++
			}
		}
		return n >= 3
	}) {
		t.Fatalf("no other process took over the ticks within 30s of the leader stopping")
	}
	all := passes(t, procs...)
	ticks := checkOnePassPerTick(t, all, every, [2]time.Time{stopping, stoppedAt.Add(every)})
	t.Logf("%d scheduled passes over %d ticks; %d emails sent by three processes", len(all), ticks, want)
	for _, p := range rest {
		p.stop(t)
	}
}

const downAcrossTicksJourney = `sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0s, template: hello}
      - {after: 8s, template: tips}
  - name: settled
    trigger: {when: 'days_in_stage > 0.00015'}
    steps:
      - {after: 0s, template: settled}
sending:
  frequency_cap: {max: 100, per: 1d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: hello, subject: "Hello", text: "Welcome."}
  - {name: tips, subject: "Tips", text: "Tip one."}
  - {name: settled, subject: "Settled in?", text: "Thirteen seconds in."}
`

// Every process is down across several scheduled ticks: a sequence step
// that fell due while they were down (the sender's work) and an
// enrolment whose condition became true while they were down (the
// sweep's work) are each sent once, at once, after the restart.
func TestFaultAllProcessesDownAcrossTicks(t *testing.T) {
	t.Parallel()
	downAcrossTicks(t, false)
}

// downAcrossTicks runs two serve processes, stops both (with SIGKILL when
// crash is set, with SIGTERM otherwise) while nothing is on the wire, keeps
// them down across the instants a step and an enrolment fall due, and
// starts two others.
func downAcrossTicks(t *testing.T, crash bool) {
	const contacts = 40
	bin := buildFaultBinary(t)
	url := pgtest.Clone(t)
	srv := smtptest.Start(t)
	env := map[string]string{
		"DATABASE_URL":     url,
		"WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none&pool=2", srv.Addr()),
		"WAYMARK_FROM":     "shop@shop.example",
		"WAYMARK_CRON":     "*/2 * * * * *",
	}
	seedFaultJourney(t, env, contacts, downAcrossTicksJourney)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	count := func(query string) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// days_in_stage > 0.00015 days: 12.96 s after the import.
	var settledAt time.Time
	if err := pool.QueryRow(context.Background(), `SELECT max(stage_entered_at) + interval '12.96 seconds' FROM contacts`).Scan(&settledAt); err != nil {
		t.Fatal(err)
	}

	a := startServeProc(t, bin, "serve-a", env)
	b := startServeProc(t, bin, "serve-b", env)
	if !waitUntil(60*time.Second, func() bool { return srv.Count() >= contacts }) {
		t.Fatalf("the first step did not go out: %d messages, sends %v", srv.Count(), sendCounts(t, pool))
	}
	// The senders record what the server accepted just after: stopped
	// in between, a send is rightly unknown, and this test is about what
	// falls due while everything is down, not about that window (the
	// exactly-once tests are).
	if !waitUntil(10*time.Second, func() bool {
		return count(`SELECT count(*) FROM sends WHERE sequence = 'welcome' AND step = 0 AND status = 'sent'`) == contacts
	}) {
		t.Fatalf("the first step's sends were not recorded sent: %v", sendCounts(t, pool))
	}
	if crash {
		a.kill(t)
		b.kill(t)
	} else {
		a.stop(t)
		b.stop(t)
	}
	down := clock.Now() // the frame of the database's times and the processes' clock
	if n := count(`SELECT count(*) FROM sends WHERE (step = 1 AND status <> 'queued') OR sequence = 'settled'`); n != 0 || down.After(settledAt) {
		t.Fatalf("the processes stopped too late to test anything (%d later sends already went out or were queued, stopped at %s, the condition turns true at %s): the machine is too slow for this test's timing", n, down.Format("15:04:05.000"), settledAt.Format("15:04:05.000"))
	}
	var secondDue time.Time
	if err := pool.QueryRow(context.Background(), `SELECT max(sent_at) + interval '8 seconds' FROM sends WHERE step = 0 AND sequence = 'welcome'`).Scan(&secondDue); err != nil {
		t.Fatal(err)
	}
	// Down until both fell due, and over at least two ticks more.
	up := settledAt
	if secondDue.After(up) {
		up = secondDue
	}
	time.Sleep(up.Add(4 * time.Second).Sub(clock.Now()))
	if n := srv.Count(); n != contacts {
		t.Fatalf("%d messages while every process was down", n)
	}

	restarted := clock.Now()
	c := startServeProc(t, bin, "serve-c", env)
	d := startServeProc(t, bin, "serve-d", env)
	want := contacts * 3
	// The step that fell due is the sender's: it goes out at once, even
	// after a crash.
	if !waitUntil(60*time.Second, func() bool {
		return count(`SELECT count(*) FROM sends WHERE sequence = 'welcome' AND step = 1 AND status = 'sent'`) == contacts
	}) {
		t.Fatalf("60s after the restart the due step was not sent: sends %v", sendCounts(t, pool))
	}
	stepTook := clock.Now().Sub(restarted)
	// The enrolment is the sweep's: after a crash, it waits until the dead
	// leader's lease expires (at most 30 s at this schedule).
	if !waitUntil(90*time.Second, func() bool { return srv.Count() >= want && sendCounts(t, pool)["sent"] >= want }) {
		t.Fatalf("90s after the restart: %d messages, sends %v; want %d", srv.Count(), sendCounts(t, pool), want)
	}
	took := clock.Now().Sub(restarted)
	time.Sleep(4 * time.Second) // two more ticks: nothing more goes out
	if got := sendCounts(t, pool); got["sent"] != want || len(got) != 1 {
		t.Errorf("sends by status %v, want %d sent", got, want)
	}
	if n := checkDelivery(t, pool, srv); n != want {
		t.Errorf("the server received %d distinct messages, want %d", n, want)
	}
	if n := count(`SELECT count(*) FROM enrolments WHERE sequence = 'settled'`); n != contacts {
		t.Errorf("%d contacts enrolled in settled, want %d", n, contacts)
	}
	ps := passes(t, c, d)
	if len(ps) == 0 {
		t.Fatal("no scheduled pass after the restart")
	}
	checkOnePassPerTick(t, passes(t, a, b), 2*time.Second)
	checkOnePassPerTick(t, ps, 2*time.Second)
	t.Logf("down %v (crash: %v); after the restart the due step went out in %v, everything in %v (first pass at +%v)", restarted.Sub(down).Round(time.Millisecond),
		crash, stepTook.Round(time.Millisecond), took.Round(time.Millisecond), ps[0].tick.Sub(restarted).Round(time.Millisecond))
	c.stop(t)
	d.stop(t)
}
