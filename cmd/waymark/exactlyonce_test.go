package main

// Exactly once, end to end: the real binary, real PostgreSQL, a real SMTP
// server. A large send is killed with SIGKILL several times at random
// moments and restarted; two senders start at once on the same due sends.
// Neither may ever put the same Message-ID on the wire twice, and a crash
// may cost at most one message per open SMTP connection, marked unknown.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

// exactlyOnceJourney gives every contact (all start in awareness) one
// email due at once, with nothing that would hold it back: no quiet
// hours, a frequency cap far above one email.
const exactlyOnceJourney = `sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: welcome}
sending:
  frequency_cap: {max: 100, per: 1d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: welcome, subject: "Welcome", text: "Glad you are here."}
`

// buildWaymark builds the binary under test into a temporary directory.
func buildWaymark(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "waymark")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// sendingScene is the set-up of the sending tests: a database of its own
// with n contacts who will each be due one welcome email, the
// environment of a sender with conns connections to smtp, the binary,
// and a pool on the database (closed when the test ends).
func sendingScene(t *testing.T, smtp *smtptest.Server, conns, n int) (map[string]string, string, *pgxpool.Pool) {
	t.Helper()
	return sendingSceneWith(t, smtp, conns, n, exactlyOnceJourney)
}

// sendingSceneWith is sendingScene with another journey.
func sendingSceneWith(t *testing.T, smtp *smtptest.Server, conns, n int, journey string) (map[string]string, string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.Clone(t)
	env := map[string]string{
		"DATABASE_URL":     url,
		"WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none&pool=%d", smtp.Addr(), conns),
		"WAYMARK_FROM":     "Shop <news@shop.example>",
	}
	bin := buildWaymark(t)
	seedJourney(t, env, n, journey)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return env, bin, pool
}

// enrolWithoutSMTP runs a tick with env's database and no SMTP server:
// it enrols the contacts, and their sends fall due without being sent.
func enrolWithoutSMTP(t *testing.T, env map[string]string) {
	t.Helper()
	if out, errOut, err := runWith(t, map[string]string{"DATABASE_URL": env["DATABASE_URL"]}, "tick"); err != nil {
		t.Fatalf("tick: %v\n%s\n%s", err, out, errOut)
	}
}

// seedWelcome imports n contacts and applies exactlyOnceJourney.
func seedWelcome(t *testing.T, env map[string]string, n int) {
	t.Helper()
	seedJourney(t, env, n, exactlyOnceJourney)
}

// seedJourney imports n contacts (u1@example.com…) and applies journey.
func seedJourney(t *testing.T, env map[string]string, n int, journey string) {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("userId,email\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&csv, "u%d,u%d@example.com\n", i, i)
	}
	importAndApply(t, env, map[string]string{"contacts.csv": csv.String(), "journey.yaml": journey})
}

// tickProc is a `waymark tick` running as a child process.
type tickProc struct {
	cmd         *exec.Cmd
	stdout      bytes.Buffer
	stderr      bytes.Buffer
	done        chan struct{}
	err         error // once done is closed
	killed      bool
	started     time.Time
	ranFor      time.Duration
	description string
}

// startTick starts `waymark tick` with env added to a cleaned environment.
func startTick(t *testing.T, bin string, env map[string]string, description string) *tickProc {
	t.Helper()
	p := &tickProc{done: make(chan struct{}), description: description}
	p.cmd = exec.Command(bin, "tick")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "DATABASE_URL" || strings.HasPrefix(k, "WAYMARK_") && k != clock.ShiftVar {
			continue
		}
		p.cmd.Env = append(p.cmd.Env, kv)
	}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", description, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.ranFor = time.Since(p.started)
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *tickProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL (no chance to clean up) and waits for the process.
func (p *tickProc) kill(t *testing.T) {
	t.Helper()
	p.killed = true
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
		t.Fatalf("kill -9 %s: %v", p.description, err)
	}
	<-p.done
}

// wait waits for a normal exit and fails the test if the tick failed.
func (p *tickProc) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not finish in %v\nstdout:\n%s\nstderr:\n%s", p.description, timeout, p.stdout.String(), p.stderr.String())
	}
	if p.err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", p.description, p.err, p.stdout.String(), p.stderr.String())
	}
}

// holderOf is the pattern matching the sender holder of a process
// (hostname/pid/random).
func (p *tickProc) holderPattern() string {
	return fmt.Sprintf("%%/%d/%%", p.cmd.Process.Pid)
}

var tickSummary = regexp.MustCompile(`sent (\d+) in [^;]*; (\d+) failed, (\d+) unknown`)

// summary returns what a finished tick reported: sent, failed, unknown.
func (p *tickProc) summary(t *testing.T) (sent, failed, unknown int) {
	t.Helper()
	m := tickSummary.FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Fatalf("%s printed no send summary:\n%s", p.description, p.stdout.String())
	}
	sent, _ = strconv.Atoi(m[1])
	failed, _ = strconv.Atoi(m[2])
	unknown, _ = strconv.Atoi(m[3])
	return sent, failed, unknown
}

// sendKey is a send's primary key.
type sendKey struct{ contact, id int64 }

var messageIDPattern = regexp.MustCompile(`^<(\d+)\.(\d+)\.[a-z2-7]{16}@shop\.example>$`)

// receivedByID counts the messages the server received by Message-ID,
// which Waymark derives from the send (<CONTACT.SEND.INSTALLATION@domain>).
func receivedByID(t *testing.T, msgs []smtptest.Message) map[sendKey]int {
	t.Helper()
	out := make(map[sendKey]int, len(msgs))
	for _, m := range msgs {
		ids := m.Header("Message-ID")
		if len(ids) != 1 {
			t.Fatalf("a message with Message-ID headers %q", ids)
		}
		sm := messageIDPattern.FindStringSubmatch(strings.TrimSpace(ids[0]))
		if sm == nil {
			t.Fatalf("Message-ID %q is not <CONTACT.SEND.INSTALLATION@shop.example>", ids[0])
		}
		c, _ := strconv.ParseInt(sm[1], 10, 64)
		id, _ := strconv.ParseInt(sm[2], 10, 64)
		out[sendKey{c, id}]++
	}
	return out
}

// settle waits until the server has recorded at least min messages and
// its count has stopped moving (a killed client's last DATA may still be
// in the server's hands for a moment).
func settle(t *testing.T, smtp *smtptest.Server, min int) []smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last, stableSince := -1, time.Now()
	for {
		n := smtp.Count()
		if n != last {
			last, stableSince = n, time.Now()
		}
		if n >= min && time.Since(stableSince) >= 300*time.Millisecond {
			return smtp.Messages()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SMTP server has %d messages after 30s, want at least %d", n, min)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type sendRow struct {
	status, messageID, recipient, email string
}

// sendRows loads every send with its contact's email.
func sendRows(t *testing.T, pool *pgxpool.Pool) map[sendKey]sendRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT s.contact_id, s.id, s.status, coalesce(s.message_id, ''), coalesce(s.recipient, ''), coalesce(c.email, '')
		FROM sends s JOIN contacts c ON c.id = s.contact_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[sendKey]sendRow{}
	for rows.Next() {
		var k sendKey
		var r sendRow
		if err := rows.Scan(&k.contact, &k.id, &r.status, &r.messageID, &r.recipient, &r.email); err != nil {
			t.Fatal(err)
		}
		out[k] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func statusCounts(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT status, count(*) FROM sends GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func queryInt(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// checkExactlyOnce asserts the end state: every send is sent or unknown
// (total n); no Message-ID was received twice; every sent send was
// received, by its contact's address; every message received is a sent
// or unknown send. It returns the counts.
func checkExactlyOnce(t *testing.T, pool *pgxpool.Pool, smtp *smtptest.Server, n int) (sent, unknown, unknownReceived int) {
	t.Helper()
	counts := statusCounts(t, pool)
	sent, unknown = counts["sent"], counts["unknown"]
	for s, c := range counts {
		if s != "sent" && s != "unknown" {
			t.Errorf("%d sends are %q at the end, want only sent or unknown", c, s)
		}
	}
	if sent+unknown != n {
		t.Errorf("sent %d + unknown %d = %d, want %d", sent, unknown, sent+unknown, n)
	}
	msgs := settle(t, smtp, sent)
	got := receivedByID(t, msgs)
	rows := sendRows(t, pool)
	dups := 0
	for k, c := range got {
		if c > 1 {
			dups++
			if dups <= 10 {
				t.Errorf("Message-ID <%d.%d@shop.example> received %d times", k.contact, k.id, c)
			}
		}
		r, ok := rows[k]
		switch {
		case !ok:
			t.Errorf("received <%d.%d@shop.example>, which is no send", k.contact, k.id)
		case r.status == "unknown":
			unknownReceived++
		case r.status != "sent":
			t.Errorf("received <%d.%d@shop.example>, whose send is %q", k.contact, k.id, r.status)
		}
	}
	if dups > 0 {
		t.Errorf("%d Message-IDs were received more than once (%d messages for %d distinct)", dups, len(msgs), len(got))
	}
	missing := 0
	for k, r := range rows {
		if r.status != "sent" {
			continue
		}
		if got[k] == 0 {
			missing++
			if missing <= 10 {
				t.Errorf("send %d.%d is sent but the server never received it", k.contact, k.id)
			}
		}
		if want := fmt.Sprintf("%d.%d.", k.contact, k.id); !strings.HasPrefix(r.messageID, want) || r.recipient != r.email {
			t.Errorf("send %s: message_id %q, recipient %q (contact %q)", want, r.messageID, r.recipient, r.email)
		}
	}
	if missing > 0 {
		t.Errorf("%d sent sends never reached the server", missing)
	}
	// Every received message is addressed to its send's contact.
	for _, m := range msgs {
		k := receivedByID(t, []smtptest.Message{m})
		for key := range k {
			if r, ok := rows[key]; ok && (len(m.To) != 1 || m.To[0] != r.email) {
				t.Errorf("<%d.%d@shop.example> went to %v, want %s", key.contact, key.id, m.To, r.email)
			}
		}
	}
	return sent, unknown, unknownReceived
}

// Issue 8's fault: the sender killed with SIGKILL five times at random
// moments of a 10,000-email run, restarted each time. A killed sender's
// PostgreSQL sessions end with its process, so each restart finds the
// senders killed before it gone at once — though their leases, renewed as
// a heartbeat would have been a moment before the kill, are still alive —
// marks what they left on the wire unknown and sends everything else.
func TestKillNineDuringALargeSend(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the binary five times during a 10,000-email send")
	}
	t.Parallel()
	const (
		n     = 10_000
		conns = 16
		kills = 5
	)
	smtp := smtptest.Start(t)
	env, bin, pool := sendingScene(t, smtp, conns, n)
	ctx := context.Background()

	start := time.Now()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))
	var onWire []int // per kill: sends its sender left on the wire
	for k := 1; k <= kills; k++ {
		p := startTick(t, bin, env, fmt.Sprintf("tick %d", k))
		killMidSend(t, p, smtp, 20+rng.IntN(n/(2*(kills+1))), rng)
		// Renewed as a heartbeat would have been a moment before the
		// kill, so that the lease outlives this test however slow the
		// machine is: only the sender's being gone may release what
		// it left.
		if _, err := pool.Exec(ctx, `UPDATE leases SET expires_at = now() + interval '10 minutes' WHERE name LIKE 'sender:%' AND holder LIKE $1`, p.holderPattern()); err != nil {
			t.Fatal(err)
		}
		w := queryInt(t, pool, `SELECT count(*) FROM sends WHERE status = 'sending' AND claimed_by LIKE $1`, p.holderPattern())
		claimed := queryInt(t, pool, `SELECT count(*) FROM sends WHERE status = 'queued' AND claimed_by LIKE $1`, p.holderPattern())
		onWire = append(onWire, w)
		t.Logf("kill -9 of tick %d after %.2fs, the server having %d messages: %d sends left on the wire, %d claimed but not started",
			k, p.ranFor.Seconds(), smtp.Count(), w, claimed)
		if w > conns {
			t.Errorf("tick %d left %d sends on the wire, more than its %d connections", k, w, conns)
		}
	}
	// Each restart marked unknown what the sender before it left on the
	// wire, nothing else.
	recovered := 0
	for _, w := range onWire[:kills-1] {
		recovered += w
	}
	if u := statusCounts(t, pool)["unknown"]; u != recovered {
		t.Errorf("after the restarts, %d sends are unknown; want the %d that the senders killed before the last left on the wire (%v)", u, recovered, onWire)
	}

	// The last one killed is gone too, its lease alive: the next tick
	// marks what it left on the wire unknown and sends the rest, at once.
	p := startTick(t, bin, env, "final tick")
	p.wait(t, 60*time.Second)
	finalSent, _, finalUnknown := p.summary(t)
	if finalUnknown != onWire[kills-1] {
		t.Errorf("the final tick marked %d sends unknown, want the %d left on the wire", finalUnknown, onWire[kills-1])
	}
	if strings.Contains(p.stdout.String(), "claimed by another sender") {
		t.Errorf("the final tick waited for a killed sender:\n%s", p.stdout.String())
	}
	if left := statusCounts(t, pool); left["queued"]+left["sending"] != 0 {
		t.Errorf("after the final tick: %v, want nothing queued or sending", left)
	}

	sent, unknown, unknownReceived := checkExactlyOnce(t, pool, smtp, n)
	if want := recovered + onWire[kills-1]; unknown != want {
		t.Errorf("%d sends unknown, want the %d left on the wire by the kills (%v)", unknown, want, onWire)
	}
	if unknown > conns*kills {
		t.Errorf("%d sends unknown, more than %d connections × %d kills", unknown, conns, kills)
	}
	if sent == 0 {
		t.Errorf("nothing was sent")
	}
	t.Logf("%d contacts, %d kill -9s, %d SMTP connections: %d sent + %d unknown = %d (%d of the unknown did reach the server, %d did not), %d messages received, 0 duplicates; final tick sent %d in %.2fs; %.1fs in all",
		n, kills, conns, sent, unknown, sent+unknown, unknownReceived, unknown-unknownReceived, smtp.Count(), finalSent, p.ranFor.Seconds(), time.Since(start).Seconds())
}

// killMidSend kills p with SIGKILL once the server has received more
// messages than when it was called — at a moment nobody chose.
func killMidSend(t *testing.T, p *tickProc, smtp *smtptest.Server, more int, rng *rand.Rand) {
	t.Helper()
	target := smtp.Count() + more
	deadline := time.Now().Add(60 * time.Second)
	for smtp.Count() < target {
		if p.exited() {
			t.Fatalf("%s ended before it was killed (server had %d messages, waiting for %d): %v\nstdout:\n%s\nstderr:\n%s",
				p.description, smtp.Count(), target, p.err, p.stdout.String(), p.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the server reached only %d messages in 60s, waiting for %d\nstderr:\n%s", p.description, smtp.Count(), target, p.stderr.String())
		}
		time.Sleep(time.Millisecond + time.Duration(rng.IntN(3000))*time.Microsecond)
	}
	p.kill(t)
}

// A sender that is still running — stopped (SIGSTOP) mid-send, its
// sessions open — keeps its claims: another tick sends everything else
// and says how many due sends wait for it and until when its lease runs;
// once it is killed, the next tick releases them at once.
func TestStoppedSenderIsWaitedForAndSaid(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and kills a sender during a 3,000-email send")
	}
	t.Parallel()
	const (
		n     = 3000
		conns = 4
	)
	smtp := smtptest.Start(t, smtptest.Delay(time.Millisecond))
	env, bin, pool := sendingScene(t, smtp, conns, n)
	enrolWithoutSMTP(t, env)
	a := startTick(t, bin, env, "sender A")
	for deadline := time.Now().Add(60 * time.Second); smtp.Count() < 50; time.Sleep(2 * time.Millisecond) {
		if a.exited() || time.Now().After(deadline) {
			t.Fatalf("sender A did not get going: %d messages\nstderr:\n%s", smtp.Count(), a.stderr.String())
		}
	}
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// What A had in flight lands: a claim or a commit A sent before it
	// stopped still runs in its PostgreSQL session. Counted once steady
	// and no session of A's runs a statement any more (under load a claim
	// can run longer than the pause between two counts: the counts were
	// once steady while a claim of 1,500 sends was still to land).
	var claimed, onWire int
	for prev := -1; ; prev = claimed + onWire {
		time.Sleep(300 * time.Millisecond)
		claimed = queryInt(t, pool, `SELECT count(*) FROM sends WHERE status = 'queued' AND claimed_by LIKE $1`, a.holderPattern())
		onWire = queryInt(t, pool, `SELECT count(*) FROM sends WHERE status = 'sending' AND claimed_by LIKE $1`, a.holderPattern())
		running := queryInt(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'`)
		if claimed+onWire == prev && running == 0 {
			break
		}
	}
	if claimed == 0 {
		t.Fatalf("sender A, stopped, holds no claims (%v): nothing to test", statusCounts(t, pool))
	}

	b := startTick(t, bin, env, "sender B")
	b.wait(t, 90*time.Second)
	want := fmt.Sprintf("%d due sends are claimed by another sender that is still running: they wait for it, or until its lease runs out at ", claimed)
	if !strings.Contains(b.stdout.String(), want) {
		t.Errorf("sender B's report does not say that %d sends wait for A:\n%s", claimed, b.stdout.String())
	}
	if c := statusCounts(t, pool); c["queued"] != claimed || c["sending"] != onWire || c["unknown"] != 0 {
		t.Errorf("while A is stopped: %v; want its %d claims queued and its %d on the wire untouched", c, claimed, onWire)
	}

	a.kill(t)
	c := startTick(t, bin, env, "sender C")
	c.wait(t, 60*time.Second)
	sent, _, unknown := c.summary(t)
	if sent != claimed || unknown != onWire {
		t.Errorf("after A was killed, C sent %d and marked %d unknown; want A's %d claims sent and its %d on the wire unknown", sent, unknown, claimed, onWire)
	}
	s, u, _ := checkExactlyOnce(t, pool, smtp, n)
	if s+u != n || u != onWire {
		t.Errorf("%d sent, %d unknown; want %d in all, %d unknown", s, u, n, onWire)
	}
	t.Logf("A stopped with %d claims and %d on the wire; B sent the rest in %.2fs and said so; after the kill C sent A's claims in %.2fs",
		claimed, onWire, b.ranFor.Seconds(), c.ranFor.Seconds())
}

func TestTwoSendersAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two senders on 2,000 emails")
	}
	t.Parallel()
	const (
		n     = 2000
		conns = 4
	)
	smtp := smtptest.Start(t, smtptest.Delay(2*time.Millisecond))
	env, bin, pool := sendingScene(t, smtp, conns, n)
	// A tick without SMTP enrols everyone: n sends are due.
	enrolWithoutSMTP(t, env)
	if q := queryInt(t, pool, `SELECT count(*) FROM sends WHERE status = 'queued' AND due_at <= $1`, clock.Now()); q != n {
		t.Fatalf("%d sends due, want %d", q, n)
	}

	start := time.Now()
	a := startTick(t, bin, env, "sender A")
	b := startTick(t, bin, env, "sender B")
	a.wait(t, 90*time.Second)
	b.wait(t, 90*time.Second)
	el := time.Since(start)
	sa, fa, ua := a.summary(t)
	sb, fb, ub := b.summary(t)
	if sa+sb != n || fa+fb+ua+ub != 0 {
		t.Errorf("A sent %d (%d failed, %d unknown), B sent %d (%d failed, %d unknown); want %d sent in all", sa, fa, ua, sb, fb, ub, n)
	}
	sent, unknown, _ := checkExactlyOnce(t, pool, smtp, n)
	if sent != n || unknown != 0 {
		t.Errorf("%d sent, %d unknown; want %d sent", sent, unknown, n)
	}
	if c := smtp.Count(); c != n {
		t.Errorf("the server received %d messages, want %d", c, n)
	}
	t.Logf("two senders at once on %d due sends: A sent %d in %.2fs, B sent %d in %.2fs; %d received, each Message-ID once; %.2fs in all",
		n, sa, a.ranFor.Seconds(), sb, b.ranFor.Seconds(), smtp.Count(), el.Seconds())
}
