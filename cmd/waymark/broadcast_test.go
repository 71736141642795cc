package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/internal/store"
)

// broadcastJourney: customers (an order) are in retention, reviewers in
// advocacy; vip spent 500 in a year. The catalogue goes to vip customers
// at 09:00 in each one's own time zone, testing two subject lines on half
// of them, the winner by clicks after 4 hours. A survey sequence mails
// whoever asks for it; the cap is one marketing email a week, so a vip who
// got the survey waits for the catalogue; an open complaint holds.
const broadcastJourney = `rules:
  - {name: customer, from: [awareness, consideration, decision], to: retention, when: 'ever("order_completed")'}
  - {name: fan, from: [retention], to: advocacy, when: 'ever("review_posted")'}
segments:
  - name: vip
    when: sum("order_completed", "revenue", "365d") >= 500
tones:
  - tone: formal
    when: traits.company != nil && traits.company != ""
  - tone: friendly
holds:
  - name: open-complaint
    when: count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")
sequences:
  - name: survey
    trigger: {event: survey_requested}
    steps:
      - {after: 0h, template: survey}
sending:
  frequency_cap: {max: 1, per: 7d}
  quiet_hours: {from: "21:00", to: "08:00", default_timezone: UTC}
templates:
  - name: catalogue
    subject: "The winter catalogue"
    text: "Hello {{.Contact.FirstName}}, the catalogue is out."
    tones: {formal: {text: "Dear customer, the catalogue is out."}}
  - {name: survey, subject: "A short survey", text: "Tell us."}
broadcasts:
  - name: winter
    audience: {stages: [retention], segment: vip}
    template: catalogue
    send_at: "%s"
    test:
      variants: [{subject: "The winter catalogue"}, {subject: "Warm up: our winter catalogue"}]
      share: 0.5
      pick_by: clicks
      after: 4h
      min_results: 2
`

// The done-when test of issue 19, by CLI ticks at chosen instants (the
// scheduled pass, the broadcast's run, the sender), into a real SMTP
// server: a broadcast with an A/B test to a stage-and-segment audience
// across time zones. Checked message by message: who got what and when
// (09:00 in each one's zone), that the test share got both subjects, the
// winner (the subject more clicked) the rest, that a held contact waits
// with the reason, a capped one (the survey, a sequence's email, counts
// towards the cap) waits a week, an unsubscribed one gets nothing, two
// contacts sharing an address get one email, and that more ticks, a
// second instance at once, and the next pass send nothing twice.
func TestBroadcastABTestAcrossTimeZones(t *testing.T) {
	t.Parallel()
	url, smtp, env := mailScene(t)
	now := clock.Now().UTC().Truncate(time.Hour)
	// The catalogue goes out on the day after tomorrow, 09:00 wherever
	// each contact is.
	d := now.Add(72 * time.Hour)
	wall := time.Date(d.Year(), d.Month(), d.Day(), 9, 0, 0, 0, time.UTC)
	zones := map[string]string{"kir": "Pacific/Kiritimati", "par": "Europe/Paris", "nyc": "America/New_York", "utc": ""}
	var contacts, events strings.Builder
	contacts.WriteString("userId,email,first_name,timezone,company\n")
	events.WriteString("userId,event,timestamp,revenue\n")
	ago := func(h int) string { return now.Add(-time.Duration(h) * time.Hour).Format(time.RFC3339) }
	vip := func(user, zone string) {
		fmt.Fprintf(&contacts, "%s,%s@example.com,%s,%s,\n", user, user, strings.ToUpper(user[:1])+user[1:], zone)
		fmt.Fprintf(&events, "%s,order_completed,%s,600\n", user, ago(48))
	}
	var users []string
	for _, z := range []string{"kir", "par", "nyc", "utc"} {
		n := 8
		if z == "kir" {
			n = 16 // the test is decided on them alone
		}
		for i := 1; i <= n; i++ {
			u := fmt.Sprintf("%s%d", z, i)
			vip(u, zones[z])
			users = append(users, u)
		}
	}
	// Not in the audience: a small spender (not vip), a vip who reviewed
	// (advocacy), a vip who unsubscribed before the run.
	fmt.Fprintf(&contacts, "small,small@example.com,Small,,\nfan,fan@example.com,Fan,,\ngone,gone@example.com,Gone,,\n")
	fmt.Fprintf(&events, "small,order_completed,%s,20\nfan,order_completed,%s,900\nfan,review_posted,%s,\ngone,order_completed,%s,700\n", ago(48), ago(48), ago(40), ago(48))
	// In it, but: held (an open complaint), capped (asks for the survey
	// the day before), formal (a company), and two contacts of one address.
	vip("held", "")
	fmt.Fprintf(&events, "held,support_ticket_opened,%s,\n", ago(24))
	vip("capped", "")
	fmt.Fprintf(&contacts, "firm,firm@example.com,Firm,,Acme\n")
	fmt.Fprintf(&events, "firm,order_completed,%s,800\n", ago(48))
	fmt.Fprintf(&contacts, "twin-a,twin@example.com,Twin,,\ntwin-b,TWIN@example.com,Twin,,\n")
	fmt.Fprintf(&events, "twin-a,order_completed,%s,500\ntwin-b,order_completed,%s,500\n", ago(48), ago(48))
	importAndApply(t, env, map[string]string{"contacts.csv": contacts.String(), "events.csv": events.String(),
		"journey.yaml": fmt.Sprintf(broadcastJourney, wall.Format("2006-01-02T15:04"))})
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	st := store.New(pool)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	tick := func(at time.Time) string {
		t.Helper()
		out, errOut, err := runWith(t, env, "tick", "--as-of", at.Format(time.RFC3339))
		if err != nil {
			t.Fatalf("tick at %s: %v\n%s", at, err, errOut)
		}
		return out
	}
	id := func(user string) int64 {
		var id int64
		if err := pool.QueryRow(ctx, `SELECT contact_id FROM identities WHERE identity = 'u:' || $1`, user).Scan(&id); err != nil {
			t.Fatalf("contact %s: %v", user, err)
		}
		return id
	}
	// The day before: a first pass (stages), gone unsubscribes, capped
	// asks for the survey and gets it.
	dayBefore := wall.Add(-38 * time.Hour)
	tick(dayBefore)
	if _, err := st.Unsubscribe(ctx, id("gone"), 0, dayBefore); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO events (contact_id, message_id, kind, name, occurred_at) VALUES ($1, 'survey-1', 'track', 'survey_requested', $2)`, id("capped"), dayBefore)
	tick(dayBefore.Add(time.Minute))
	if n := smtp.Count(); n != 1 {
		t.Fatalf("%d emails before the run, want the survey", n)
	}

	// The instants the catalogue is due: 09:00 in each zone.
	dueIn := func(zone string) time.Time {
		loc := time.UTC
		if zone != "" {
			loc, _ = time.LoadLocation(zone)
		}
		return campaigns.DueIn(wall, true, loc)
	}
	start := dueIn("Pacific/Kiritimati")
	if !start.Equal(wall.Add(-14 * time.Hour)) {
		t.Fatalf("Kiritimati's 09:00 is %s", start)
	}
	tick(start)
	var audience int64
	if err := pool.QueryRow(ctx, `SELECT audience FROM broadcast_runs WHERE broadcast = 'winter'`).Scan(&audience); err != nil {
		t.Fatal(err)
	}
	// 40 in the zones, held, capped, firm and the twins: 45.
	if audience != 45 {
		t.Fatalf("audience %d, want 45", audience)
	}
	// Kiritimati's test share went out at its 09:00; clicks: 1 on the
	// first subject, 3 on the second (people, from the tracking path).
	type sendRow struct {
		contact int64
		id      int64
		variant int
		status  string
	}
	var kir []sendRow
	rows, _ := pool.Query(ctx, `SELECT s.contact_id, s.id, s.variant, s.status FROM sends s JOIN identities i ON i.contact_id = s.contact_id
		WHERE s.broadcast = 'winter' AND s.ab_test AND i.identity LIKE 'u:kir%' ORDER BY s.contact_id`)
	for rows.Next() {
		var r sendRow
		_ = rows.Scan(&r.contact, &r.id, &r.variant, &r.status)
		kir = append(kir, r)
	}
	clicks := map[int]int{0: 1, 1: 3}
	for _, r := range kir {
		if r.status != "sent" {
			t.Fatalf("a Kiritimati test send is %s at its 09:00", r.status)
		}
		if clicks[r.variant] > 0 {
			clicks[r.variant]--
			if _, err := st.TrackEngagement(ctx, r.contact, r.id, "email_clicked", map[string]any{"url": "https://shop.example/x"}, start.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if clicks[0]+clicks[1] != 0 {
		t.Fatalf("the Kiritimati test share %v was too small for the clicks the test needs", kir)
	}
	// A second instance at the same instant, and the decision 4 hours on.
	done := make(chan string)
	go func() {
		out, _, _ := runWith(t, env, "tick", "--as-of", start.Format(time.RFC3339))
		done <- out
	}()
	tick(start)
	<-done
	tick(start.Add(4 * time.Hour))
	var decision []byte
	if err := pool.QueryRow(ctx, `SELECT decision FROM broadcast_runs WHERE broadcast = 'winter'`).Scan(&decision); err != nil || decision == nil {
		t.Fatalf("no decision recorded (%v)", err)
	}
	run, err := st.BroadcastRuns(ctx, "winter")
	if err != nil || len(run) != 1 || run[0].Decision == nil {
		t.Fatalf("runs %+v (%v)", run, err)
	}
	dec := run[0].Decision
	if dec.Winner != 1 || dec.Kept || !strings.Contains(dec.Reason, "variant 2") || dec.Variants[1].People != 3 || dec.Variants[0].People != 1 {
		t.Fatalf("decision %+v, want variant 2 by 3 clicks to 1", dec)
	}
	// Then every zone's 09:00, and a later pass.
	var instants []time.Time
	for _, z := range zones {
		instants = append(instants, dueIn(z))
	}
	sort.Slice(instants, func(i, j int) bool { return instants[i].Before(instants[j]) })
	for _, at := range instants {
		if at.After(start) {
			tick(at)
		}
	}
	tick(instants[len(instants)-1].Add(time.Hour))

	// Who got what, and when.
	type got struct {
		status, subject, reason string
		sentAt                  *time.Time
		variant                 int
		test                    bool
	}
	sends := map[string]got{}
	rows, err = pool.Query(ctx, `SELECT i.identity, s.status, s.variant, s.ab_test, coalesce(s.delayed_reason, ''), s.sent_at
		FROM sends s JOIN identities i ON i.contact_id = s.contact_id WHERE s.broadcast = 'winter'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var who string
		var g got
		if err := rows.Scan(&who, &g.status, &g.variant, &g.test, &g.reason, &g.sentAt); err != nil {
			t.Fatal(err)
		}
		sends[strings.TrimPrefix(who, "u:")] = g
	}
	subjects := []string{"The winter catalogue", "Warm up: our winter catalogue"}
	byAddress := map[string][]string{}
	for _, m := range smtp.Messages() {
		subj, _ := m.DecodedHeader("Subject")
		byAddress[strings.Join(m.To, ",")] = append(byAddress[strings.Join(m.To, ",")], subj)
	}
	tests := [2]int{}
	for _, u := range users {
		g, ok := sends[u]
		zone := zones[u[:3]]
		if !ok || g.status != "sent" || g.sentAt == nil {
			t.Errorf("%s (%s): %+v, want sent", u, zone, g)
			continue
		}
		// Sent at its 09:00, or — the rest in Kiritimati — at the
		// decision.
		want := dueIn(zone)
		if !g.test && want.Before(start.Add(4*time.Hour)) {
			want = start.Add(4 * time.Hour)
		}
		if !g.sentAt.Equal(want) {
			t.Errorf("%s (%s) got it at %s, want %s", u, zone, g.sentAt.UTC().Format(time.RFC3339), want.Format(time.RFC3339))
		}
		wantSubject := subjects[1] // the winner, for the rest
		if g.test {
			tests[g.variant]++
			wantSubject = subjects[g.variant]
		}
		if got := byAddress[u+"@example.com"]; len(got) != 1 || got[0] != wantSubject {
			t.Errorf("%s received %q, want once %q", u, got, wantSubject)
		}
	}
	if tests[0] == 0 || tests[1] == 0 || tests[0]+tests[1] < 10 || tests[0]+tests[1] > 30 {
		t.Errorf("test share split %v of 40, want both variants and about half", tests)
	}
	for who, want := range map[string]string{"held": "held: open-complaint", "capped": "frequency cap: 1 emails in 168h0m0s"} {
		if g := sends[who]; g.status != "queued" || g.reason != want {
			t.Errorf("%s: %+v, want queued with %q", who, g, want)
		}
	}
	for _, who := range []string{"small", "fan", "gone"} {
		if g, ok := sends[who]; ok {
			t.Errorf("%s is not in the audience but has a send: %+v", who, g)
		}
	}
	if got := byAddress["twin@example.com"]; len(got) != 1 {
		t.Errorf("twin@example.com received %v, want one email", got)
	}
	if a, b := sends["twin-a"], sends["twin-b"]; !(a.status == "sent" && b.status == "skipped" && strings.HasPrefix(b.reason, "one address, one email")) {
		t.Errorf("twins: %+v and %+v, want the first sent and the second skipped", a, b)
	}
	var tone string
	if err := pool.QueryRow(ctx, `SELECT tone FROM sends WHERE broadcast = 'winter' AND contact_id = $1`, id("firm")).Scan(&tone); err != nil || tone != "formal" {
		t.Errorf("firm's tone %q (%v), want formal", tone, err)
	}
	// Nothing twice: every Message-ID once; ticks again send nothing.
	before := smtp.Count()
	tick(instants[len(instants)-1].Add(2 * time.Hour))
	seen := map[string]bool{}
	for _, m := range smtp.Messages() {
		mid := strings.Join(m.Header("Message-ID"), "")
		if seen[mid] {
			t.Errorf("Message-ID %s received twice", mid)
		}
		seen[mid] = true
	}
	if smtp.Count() != before {
		t.Errorf("another pass sent %d more", smtp.Count()-before)
	}
	// The capped contact's catalogue goes when the survey leaves the
	// week's window; the held one still waits.
	tick(dayBefore.Add(7*24*time.Hour + time.Hour))
	if got := byAddressOf(smtp, "capped@example.com"); len(got) != 2 {
		t.Errorf("capped@example.com received %v, want the survey, then the catalogue a week later", got)
	}
	if got := byAddressOf(smtp, "held@example.com"); len(got) != 0 {
		t.Errorf("held@example.com received %v while the complaint is open", got)
	}
}

// mailScene is a database of the test's own and an SMTP server, and the
// environment that sends to it.
func mailScene(t *testing.T) (string, *smtptest.Server, map[string]string) {
	t.Helper()
	url := pgtest.Clone(t)
	smtp := smtptest.Start(t)
	return url, smtp, map[string]string{"DATABASE_URL": url, "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", smtp.Addr()), "WAYMARK_FROM": "Shop <news@shop.example>"}
}

// importAndApply writes files (contacts.csv, events.csv if given,
// journey.yaml) and runs import on the lists and apply on the journey, in
// env's database; it returns the journey's path.
func importAndApply(t *testing.T, env map[string]string, files map[string]string) string {
	t.Helper()
	var cmds []string
	for _, list := range []string{"contacts.csv", "events.csv"} {
		if _, ok := files[list]; ok {
			cmds = append(cmds, "import "+list)
		}
	}
	dir := prepare(t, env, files, append(cmds, "apply -f journey.yaml")...)
	return filepath.Join(dir, "journey.yaml")
}

func byAddressOf(s *smtptest.Server, addr string) []string {
	var out []string
	for _, m := range s.Messages() {
		if strings.Join(m.To, ",") == addr {
			subj, _ := m.DecodedHeader("Subject")
			out = append(out, subj)
		}
	}
	return out
}

// The broadcast command: a dry run says who a broadcast would reach; a
// test email goes to seed addresses (each variant), recorded nowhere;
// pausing holds the queued emails (a tick sends none), resuming releases
// them, cancelling cancels the rest with the reason; status shows the
// progress; a throttle spreads the emails' times.
func TestBroadcastCommands(t *testing.T) {
	t.Parallel()
	url, smtp, env := mailScene(t)
	now := clock.Now().UTC().Truncate(time.Minute)
	sendAt := now.Add(2 * time.Hour)
	var contacts strings.Builder
	contacts.WriteString("userId,email,first_name\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&contacts, "c%d,c%d@example.com,C%d\n", i, i, i)
	}
	contacts.WriteString("nomail,,No\n")
	journeyFile := fmt.Sprintf(`templates:
  - {name: news, subject: "News", text: "Hello {{.Contact.FirstName}}."}
  - {name: news-b, subject: "More news", text: "Hello."}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
  frequency_cap: {max: 0}
broadcasts:
  - name: launch
    template: news
    send_at: "%s"
    throttle: 2
    test:
      variants: [news, news-b]
      share: 0.5
      pick_by: opens
      after: 1h
`, sendAt.Format(time.RFC3339))
	must := func(args ...string) string {
		t.Helper()
		out, errOut, err := runWith(t, env, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s%s", args, err, out, errOut)
		}
		return out
	}
	journeyPath := importAndApply(t, env, map[string]string{"contacts.csv": contacts.String(), "journey.yaml": journeyFile})
	out := must("apply", "-f", journeyPath, "--dry-run")
	if !strings.Contains(out, "dry run of broadcast launch (nothing changed): it would reach 40 contacts now") || !strings.Contains(out, "A/B test: variant 1: ") {
		t.Fatalf("apply --dry-run:\n%s", out)
	}
	out = must("broadcast", "status", "launch", "--dry-run")
	if !strings.Contains(out, "launch: scheduled; "+sendAt.Format(time.RFC3339)) || !strings.Contains(out, "no run yet") || !strings.Contains(out, "it would reach 40 contacts") {
		t.Fatalf("status --dry-run:\n%s", out)
	}
	// Seeds: one email per variant, to each.
	out = must("broadcast", "test", "launch", "--to", "seed@example.com,boss@example.com")
	if got := smtp.Count(); got != 4 {
		t.Fatalf("%d test emails, want 2 variants × 2 seeds:\n%s", got, out)
	}
	subj, _ := smtp.Messages()[0].DecodedHeader("Subject")
	if subj != "[test, variant 1] News" || len(smtp.Messages()[0].Header("List-Unsubscribe")) != 1 {
		t.Fatalf("a test email's subject %q, headers %v", subj, smtp.Messages()[0].HeaderNames())
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM sends`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("test emails recorded as %d sends (%v)", n, err)
	}
	// The run starts; the throttle spreads the test share's 20-ish emails
	// over about 10 s.
	must("tick", "--as-of", sendAt.Format(time.RFC3339))
	var first, last time.Time
	var test int
	if err := pool.QueryRow(ctx, `SELECT min(due_at), max(due_at), count(*) FROM sends WHERE broadcast = 'launch' AND ab_test`).Scan(&first, &last, &test); err != nil {
		t.Fatal(err)
	}
	if want := sendAt.Add(time.Duration(float64(test-1) / 2 * float64(time.Second))); !first.Equal(sendAt) || !last.Equal(want) {
		t.Fatalf("%d test emails due from %s to %s, want %s to %s", test, first, last, sendAt, want)
	}
	sent := smtp.Count() - 4
	if sent != 1 {
		t.Fatalf("at the run's start %d emails went out, want 1 (the throttle)", sent)
	}
	must("broadcast", "pause", "launch")
	must("tick", "--as-of", sendAt.Add(time.Minute).Format(time.RFC3339))
	if got := smtp.Count() - 4; got != sent {
		t.Fatalf("a paused broadcast sent %d more", got-sent)
	}
	out = must("broadcast", "status", "launch")
	if !strings.Contains(out, "launch: paused") || !strings.Contains(out, "broadcast paused") {
		t.Fatalf("status while paused:\n%s", out)
	}
	out = must("broadcast", "resume", "launch")
	if !strings.Contains(out, fmt.Sprintf("%d waiting emails were released", test-1)) {
		t.Fatalf("resume: %s", out)
	}
	// Resumed an hour later: the test share is spread again from then,
	// and goes out over 10 s.
	resumed := sendAt.Add(time.Hour)
	must("tick", "--as-of", resumed.Add(time.Minute).Format(time.RFC3339))
	if got := smtp.Count() - 4; got < test {
		t.Fatalf("after resuming, %d of the %d test emails went out", got, test)
	}
	out = must("broadcast", "cancel", "launch", "--reason", "wrong price")
	if !strings.Contains(out, "cancelled launch:") {
		t.Fatalf("cancel: %s", out)
	}
	var cancelled int
	var reason string
	if err := pool.QueryRow(ctx, `SELECT count(*), min(delayed_reason) FROM sends WHERE broadcast = 'launch' AND status = 'cancelled'`).Scan(&cancelled, &reason); err != nil {
		t.Fatal(err)
	}
	// The test was decided at the tick an hour on (nobody opened: too
	// few results, variant 1 kept) and the rest released, spread from
	// then: the first of them went out before the cancel.
	var restSent int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM sends WHERE broadcast = 'launch' AND NOT ab_test AND status = 'sent'`).Scan(&restSent); err != nil {
		t.Fatal(err)
	}
	if cancelled != 40-test-restSent || restSent != 1 || reason != "broadcast cancelled: wrong price" {
		t.Fatalf("%d cancelled (%q), %d of the rest sent; want 1 sent and the other %d cancelled with the reason", cancelled, reason, restSent, 40-test-1)
	}
	before := smtp.Count()
	must("tick", "--as-of", resumed.Add(3*time.Hour).Format(time.RFC3339))
	if smtp.Count() != before {
		t.Fatalf("a cancelled broadcast sent %d more", smtp.Count()-before)
	}
	out = must("broadcast", "status", "launch")
	if !strings.Contains(out, fmt.Sprintf("cancelled %d", 40-test-1)) || !strings.Contains(out, "launch: cancelled (wrong price)") ||
		!strings.Contains(out, "too few results: 0 people opened across the variants, fewer than 10: variant 1 kept") {
		t.Fatalf("status when cancelled:\n%s", out)
	}
	out = must("broadcast", "list")
	if !strings.Contains(out, "launch") || !strings.Contains(out, "cancelled") {
		t.Fatalf("list:\n%s", out)
	}
}

// A broadcast's emails keep the sends' crash behaviour: the real binary's
// tick, killed with SIGKILL three times while it sends a broadcast to
// 5,000 contacts and restarted, never sends an email twice and loses at
// most one a connection a kill (each unknown, never resent); the run is
// started and queued once whatever the kills.
func TestKillNineDuringABroadcast(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the binary three times during a 5,000-email broadcast")
	}
	t.Parallel()
	const (
		n     = 5000
		conns = 8
		kills = 3
	)
	smtp := smtptest.Start(t)
	env, bin, pool := sendingSceneWith(t, smtp, conns, n, fmt.Sprintf(`broadcasts:
  - {name: big, template: news, send_at: "%s"}
sending:
  frequency_cap: {max: 0}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: news, subject: "News", text: "The news."}
`, clock.Now().Add(-time.Minute).UTC().Format(time.RFC3339)))
	// Where the kills land varies from run to run (the wall clock seeds
	// it, not the product's clock: no date is read from it); the seed is
	// logged so that a failing run can be replayed.
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points seeded with %d", seed)
	rng := rand.New(rand.NewPCG(seed, 19))
	for k := 1; k <= kills; k++ {
		p := startTick(t, bin, env, fmt.Sprintf("tick %d", k))
		killMidSend(t, p, smtp, 50+rng.IntN(n/(2*(kills+1))), rng)
		t.Logf("kill -9 of tick %d after %.2fs, the server having %d messages", k, p.ranFor.Seconds(), smtp.Count())
	}
	p := startTick(t, bin, env, "final tick")
	p.wait(t, 90*time.Second)
	if runs := queryInt(t, pool, `SELECT count(*) FROM broadcast_runs`); runs != 1 {
		t.Errorf("%d runs, want the one", runs)
	}
	if queued := queryInt(t, pool, `SELECT count(*) FROM sends WHERE broadcast = 'big'`); queued != n {
		t.Errorf("%d sends queued, want one a contact: %d", queued, n)
	}
	sent, unknown, unknownReceived := checkExactlyOnce(t, pool, smtp, n)
	if unknown > conns*kills {
		t.Errorf("%d sends unknown, more than %d connections × %d kills", unknown, conns, kills)
	}
	t.Logf("%d contacts, %d kill -9s: %d sent + %d unknown (%d of those reached the server), 0 duplicates", n, kills, sent, unknown, unknownReceived)
}

// A broadcast at an instant that is night in a reader's zone waits for
// the end of quiet hours there, with the reason, and then goes out: never
// dropped, never sent at night.
func TestBroadcastWaitsForQuietHours(t *testing.T) {
	t.Parallel()
	url, smtp, env := mailScene(t)
	d := clock.Now().UTC().Add(48 * time.Hour)
	at := time.Date(d.Year(), d.Month(), d.Day(), 17, 0, 0, 0, time.UTC) // 02:00 in Tokyo, 17:00 for the contact in UTC
	importAndApply(t, env, map[string]string{
		"contacts.csv": "userId,email,timezone\ntokyo,tokyo@example.com,Asia/Tokyo\nutc,utc@example.com,\n",
		"journey.yaml": fmt.Sprintf(`templates:
  - {name: news, subject: "News", text: "Hello."}
sending:
  quiet_hours: {from: "21:00", to: "08:00", default_timezone: UTC}
broadcasts:
  - {name: flash, template: news, send_at: "%s"}
`, at.Format(time.RFC3339))})
	for _, tick := range []time.Time{at, at.Add(time.Hour)} {
		if _, errOut, err := runWith(t, env, "tick", "--as-of", tick.Format(time.RFC3339)); err != nil {
			t.Fatalf("tick: %v\n%s", err, errOut)
		}
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var status, reason string
	var due time.Time
	if err := pool.QueryRow(context.Background(), `SELECT s.status, coalesce(s.delayed_reason, ''), s.due_at FROM sends s JOIN identities i ON i.contact_id = s.contact_id
		WHERE i.identity = 'u:tokyo'`).Scan(&status, &reason, &due); err != nil {
		t.Fatal(err)
	}
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	morning := time.Date(at.In(tokyo).Year(), at.In(tokyo).Month(), at.In(tokyo).Day(), 8, 0, 0, 0, tokyo)
	if status != "queued" || reason != "quiet hours in the contact's time zone" || !due.Equal(morning) {
		t.Fatalf("tokyo's broadcast at 02:00 there: %s %q due %s, want queued for quiet hours until %s", status, reason, due, morning)
	}
	if got := byAddressOf(smtp, "utc@example.com"); len(got) != 1 || len(byAddressOf(smtp, "tokyo@example.com")) != 0 {
		t.Fatalf("at 17:00 UTC: utc got %v, tokyo %v; want utc's only", got, byAddressOf(smtp, "tokyo@example.com"))
	}
	if _, errOut, err := runWith(t, env, "tick", "--as-of", morning.UTC().Format(time.RFC3339)); err != nil {
		t.Fatalf("tick: %v\n%s", err, errOut)
	}
	if got := byAddressOf(smtp, "tokyo@example.com"); len(got) != 1 {
		t.Fatalf("tokyo received %v at 08:00 there, want the broadcast", got)
	}
}

// An A/B test decided by conversions: a variant's people are the
// recipients of its test emails credited with a conversion (the order's
// email is the one they last opened or clicked as a person within the
// goal's window) by the decision time. Variant 1: one order credited, an
// order after the decision time (credited, not counted) and one after
// only a machine's open (not credited); variant 2: three orders credited,
// one of them a recipient's second. So 1 against 3 people, variant 2
// wins; the tick before the decision attributed them.
func TestBroadcastABTestByConversions(t *testing.T) {
	t.Parallel()
	ab := newABScene(t, "conversions", 0)
	sendAt, pool, ctx, engage := ab.sendAt, ab.pool, ab.ctx, ab.engage
	n := 0
	order := func(s testSend, at time.Time) {
		t.Helper()
		n++
		if _, err := pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, $2, 'track', 'order_completed', '{"revenue": 40}', $3)`,
			s.contact, fmt.Sprintf("order-%d", n), at); err != nil {
			t.Fatal(err)
		}
	}
	v1, v2 := ab.byVariant[0], ab.byVariant[1]
	engage(v1[0], "email_opened", nil, sendAt.Add(10*time.Minute))
	order(v1[0], sendAt.Add(20*time.Minute)) // credited, counted
	engage(v1[1], "email_clicked", nil, sendAt.Add(10*time.Minute))
	order(v1[1], sendAt.Add(90*time.Minute)) // credited after the decision time: not counted
	engage(v1[2], "email_opened", map[string]any{"machine": true}, sendAt.Add(10*time.Minute))
	order(v1[2], sendAt.Add(20*time.Minute)) // a machine's open: not credited
	for i, s := range v2[:3] {
		engage(s, "email_clicked", nil, sendAt.Add(time.Duration(5+i)*time.Minute))
		order(s, sendAt.Add(30*time.Minute))
	}
	order(v2[0], sendAt.Add(40*time.Minute)) // a second order of one person: one person
	out := ab.tick(sendAt.Add(2 * time.Hour))
	if !strings.Contains(out, "conversions: 7 attributed") || !strings.Contains(out, "1 A/B tests decided") {
		t.Fatalf("the deciding tick:\n%s", out)
	}
	decision := ab.decision()
	s1, s2 := len(v1), len(v2)
	if len(decision.Variants) != 2 || decision.Variants[0].Sent != s1 || decision.Variants[0].People != 1 || decision.Variants[1].Sent != s2 || decision.Variants[1].People != 3 ||
		decision.Winner != 1 || decision.Kept || decision.PickBy != campaigns.PickConversions {
		t.Fatalf("decision %+v; want 1 of %d against 3 of %d, variant 2", decision, s1, s2)
	}
	if want := fmt.Sprintf("variant 2 (template news-b) won: %.1f%% of its recipients converted, against at most %.1f%% for the others", 300/float64(s2), 100/float64(s1)); decision.Reason != want {
		t.Errorf("reason %q, want %q", decision.Reason, want)
	}
}

// An A/B test decided by opens counts people who opened a test email as
// people: a machine's open (a mail client fetching images) and an
// email_opened event a client sent through the tracking API naming the
// send do not count. Variant 1: two people opened (one of them twice);
// variant 2: a machine's open of every email and two forged ones (counted
// as people, variant 2 would win). Variant 1 wins, 2 people against none.
func TestBroadcastABTestByOpensCountsPeopleOnly(t *testing.T) {
	t.Parallel()
	ab := newABScene(t, "opens", 0)
	v1, v2 := ab.byVariant[0], ab.byVariant[1]
	at := ab.sendAt.Add(10 * time.Minute)
	ab.engage(v1[0], "email_opened", nil, at)
	ab.engage(v1[0], "email_opened", nil, at.Add(time.Minute))
	ab.engage(v1[1], "email_opened", nil, at)
	for _, s := range v2 {
		ab.engage(s, "email_opened", map[string]any{"machine": true}, at)
	}
	for i, s := range v2[:2] {
		if _, err := ab.pool.Exec(ab.ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, $2, 'track', 'email_opened', jsonb_build_object('send_id', $3::bigint), $4)`,
			s.contact, fmt.Sprintf("forged-%d", i), s.id, at); err != nil {
			t.Fatal(err)
		}
	}
	if out := ab.tick(ab.sendAt.Add(2 * time.Hour)); !strings.Contains(out, "1 A/B tests decided") {
		t.Fatalf("the deciding tick:\n%s", out)
	}
	d := ab.decision()
	if len(d.Variants) != 2 || d.Variants[0].People != 2 || d.Variants[1].People != 0 || d.Winner != 0 || d.Kept || d.PickBy != campaigns.PickOpens {
		t.Fatalf("decision %+v; want 2 people against 0, variant 1", d)
	}
}

// testSend is a test email of an A/B scene.
type testSend struct{ contact, id int64 }

// abScene is 20 contacts sent a broadcast whose A/B test (news against
// news-b, half the audience, decided an hour on by pickBy with at least
// 2 results) is planned for sendAt, and went out at the first tick, late
// after it.
type abScene struct {
	t         *testing.T
	env       map[string]string
	sendAt    time.Time
	pool      *pgxpool.Pool
	ctx       context.Context
	st        *store.Store
	byVariant map[int][]testSend // the test emails sent, by variant
}

func newABScene(t *testing.T, pickBy string, late time.Duration) *abScene {
	url, _, env := mailScene(t)
	now := clock.Now().UTC().Truncate(time.Minute)
	ab := &abScene{t: t, env: env, sendAt: now.Add(2 * time.Hour), ctx: context.Background()}
	var contacts strings.Builder
	contacts.WriteString("userId,email\n")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&contacts, "c%d,c%d@example.com\n", i, i)
	}
	importAndApply(t, env, map[string]string{"contacts.csv": contacts.String(), "journey.yaml": fmt.Sprintf(`templates:
  - {name: news, subject: "News", text: "Hello."}
  - {name: news-b, subject: "More news", text: "Hello."}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
  frequency_cap: {max: 0}
conversion:
  event: order_completed
  value: revenue
  window: 1d
broadcasts:
  - name: launch
    template: news
    send_at: "%s"
    test:
      variants: [news, news-b]
      share: 0.5
      pick_by: %s
      after: 1h
      min_results: 2
`, ab.sendAt.Format(time.RFC3339), pickBy)})
	ab.tick(ab.sendAt.Add(late))
	pool, err := pgxpool.New(ab.ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ab.pool, ab.st = pool, store.New(pool)
	ab.byVariant = map[int][]testSend{}
	rows, _ := pool.Query(ab.ctx, `SELECT contact_id, id, variant FROM sends WHERE broadcast = 'launch' AND ab_test AND status = 'sent' ORDER BY id`)
	for rows.Next() {
		var s testSend
		var v int
		if err := rows.Scan(&s.contact, &s.id, &v); err != nil {
			t.Fatal(err)
		}
		ab.byVariant[v] = append(ab.byVariant[v], s)
	}
	if rows.Err() != nil || len(ab.byVariant[0]) < 3 || len(ab.byVariant[1]) < 3 {
		t.Fatalf("test emails sent: %v (%v)", ab.byVariant, rows.Err())
	}
	return ab
}

// tick runs `waymark tick` at at and returns what it printed.
func (ab *abScene) tick(at time.Time) string {
	ab.t.Helper()
	out, errOut, err := runWith(ab.t, ab.env, "tick", "--as-of", at.Format(time.RFC3339))
	if err != nil {
		ab.t.Fatalf("tick at %s: %v\n%s", at, err, errOut)
	}
	return out
}

// engage records an open or a click of s, as the tracking links do.
func (ab *abScene) engage(s testSend, name string, props map[string]any, at time.Time) {
	ab.t.Helper()
	if _, err := ab.st.TrackEngagement(ab.ctx, s.contact, s.id, name, props, at); err != nil {
		ab.t.Fatal(err)
	}
}

// decision is the A/B test's recorded decision.
func (ab *abScene) decision() campaigns.Decision {
	ab.t.Helper()
	var d campaigns.Decision
	if err := ab.pool.QueryRow(ab.ctx, `SELECT decision FROM broadcast_runs WHERE broadcast = 'launch'`).Scan(&d); err != nil {
		ab.t.Fatal(err)
	}
	return d
}

// An A/B test waits its hour from the first test email sent, not from the
// run's planned time: here the first pass after the run's time comes ten
// hours late. Before, that pass decided the test at once, on nobody's
// clicks, and sent variant 1 to the rest. Now it sends the test emails and
// decides nothing; a pass half an hour on still waits (and says when it
// will decide); the pass after the hour picks variant 2, which two people
// clicked, and only then does the rest get it.
func TestABTestWaitsFromItsFirstTestEmail(t *testing.T) {
	t.Parallel()
	late := 10 * time.Hour
	ab := newABScene(t, "clicks", late)
	sentAt := ab.sendAt.Add(late)
	state := func() (decided bool, decideAt time.Time, awaiting int) {
		t.Helper()
		var at *time.Time
		if err := ab.pool.QueryRow(ab.ctx, `SELECT decided_at IS NOT NULL, decide_at, (SELECT count(*) FROM sends WHERE broadcast = 'launch' AND variant IS NULL AND status = 'queued')
FROM broadcast_runs WHERE broadcast = 'launch'`).Scan(&decided, &at, &awaiting); err != nil {
			t.Fatal(err)
		}
		if at != nil {
			decideAt = *at
		}
		return decided, decideAt, awaiting
	}
	if decided, _, awaiting := state(); decided || awaiting == 0 {
		t.Fatalf("after the late pass: decided %v, %d awaiting the winner; want undecided, the rest waiting", decided, awaiting)
	}
	v2 := ab.byVariant[1]
	for _, s := range v2[:2] {
		ab.engage(s, "email_clicked", nil, sentAt.Add(10*time.Minute))
	}
	ab.tick(sentAt.Add(30 * time.Minute))
	if decided, at, _ := state(); decided || !at.Equal(sentAt.Add(time.Hour)) {
		t.Fatalf("half an hour on: decided %v, decide_at %s; want undecided until %s", decided, at, sentAt.Add(time.Hour))
	}
	if out := ab.tick(sentAt.Add(70 * time.Minute)); !strings.Contains(out, "1 A/B tests decided") {
		t.Fatalf("the pass after the hour:\n%s", out)
	}
	d := ab.decision()
	if d.Winner != 1 || d.Kept || d.Variants[1].People != 2 {
		t.Fatalf("decision %+v; want variant 2, clicked by 2", d)
	}
	var rest int
	if err := ab.pool.QueryRow(ab.ctx, `SELECT count(*) FROM sends WHERE broadcast = 'launch' AND NOT ab_test AND variant = 1`).Scan(&rest); err != nil || rest == 0 {
		t.Fatalf("the rest's emails with variant 2: %d (%v)", rest, err)
	}
}
