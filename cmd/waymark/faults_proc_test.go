package main

// Helpers for the fault tests: the real waymark binary, run as separate
// processes (`waymark serve`), stopped gently or with SIGKILL, and what
// their logs say about scheduled passes.

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/smtptest"
)

// buildFaultBinary builds the waymark binary into a temporary directory.
func buildFaultBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "waymark")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serveProc is a `waymark serve` running as a child process, its log in a
// file.
type serveProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // once done is closed
}

// startServeProc starts `waymark serve` with env (and nothing of the test
// process's DATABASE_URL or WAYMARK_* variables).
func startServeProc(t *testing.T, bin, name string, env map[string]string) *serveProc {
	t.Helper()
	p := &serveProc{name: name, done: make(chan struct{}), logPath: filepath.Join(t.TempDir(), name+".log")}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "serve")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "DATABASE_URL" || strings.HasPrefix(k, "WAYMARK_") && k != clock.ShiftVar {
			continue
		}
		p.cmd.Env = append(p.cmd.Env, kv)
	}
	full := map[string]string{"WAYMARK_HTTP_ADDR": "127.0.0.1:0", "WAYMARK_WRITE_KEY": "wk"}
	for k, v := range env {
		full[k] = v
	}
	for k, v := range full {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- log of %s (last 40 lines):\n%s", p.name, p.tail(40))
		}
	})
	return p
}

func (p *serveProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *serveProc) logText() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *serveProc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.logText(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// baseURL waits until the process listens and returns its base URL.
func (p *serveProc) baseURL(t *testing.T, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := listeningLine.FindStringSubmatch(p.logText()); m != nil {
			return "http://" + m[1]
		}
		if p.exited() {
			t.Fatalf("%s exited before listening: %v\n%s", p.name, p.err, p.tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen within %v\n%s", p.name, timeout, p.tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	if p.exited() {
		t.Fatalf("%s had already exited: %v\n%s", p.name, p.err, p.tail(40))
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not stop within 30s of SIGTERM\n%s", p.name, p.tail(40))
	}
	if p.err != nil {
		t.Fatalf("%s exited with %v\n%s", p.name, p.err, p.tail(40))
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serveProc) kill(t *testing.T) {
	t.Helper()
	if p.exited() {
		t.Fatalf("%s had already exited: %v\n%s", p.name, p.err, p.tail(40))
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// holder is the pid part the process's scheduler and sender put in their
// holder names (host/pid/random).
func (p *serveProc) pidMark() string { return fmt.Sprintf("/%d/", p.cmd.Process.Pid) }

// pass is one scheduled pass, as its instance logged it.
type pass struct {
	proc   string
	holder string
	tick   time.Time
	took   time.Duration
}

var passLine = regexp.MustCompile(`msg="scheduled pass" tick=(\S+) holder=(\S+) took=(\S+)`)

// passes returns the scheduled passes the processes logged, in tick order.
func passes(t *testing.T, procs ...*serveProc) []pass {
	t.Helper()
	var out []pass
	for _, p := range procs {
		sc := bufio.NewScanner(strings.NewReader(p.logText()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			m := passLine.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			tick, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Fatalf("%s logged a pass with tick %q: %v", p.name, m[1], err)
			}
			took, err := time.ParseDuration(m[3])
			if err != nil {
				t.Fatalf("%s logged a pass that took %q: %v", p.name, m[3], err)
			}
			out = append(out, pass{proc: p.name, holder: m[2], tick: tick, took: took})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].tick.Before(out[j].tick) })
	return out
}

// checkOnePassPerTick checks scheduled passes against a schedule firing on
// every multiple of every: no tick got two passes (across all processes),
// and every tick from the first pass's to last got one, unless a pass was
// still running when it fired (the scheduler skips a tick rather than
// overlap passes) or it fell in one of the excused intervals (a leader
// shutting down: no one may take the lease before it lets go). It returns
// the number of ticks covered.
func checkOnePassPerTick(t *testing.T, ps []pass, every time.Duration, excused ...[2]time.Time) int {
	t.Helper()
	if len(ps) == 0 {
		t.Fatal("no scheduled pass was logged")
	}
	byTick := map[time.Time][]pass{}
	for _, p := range ps {
		k := p.tick.Truncate(every)
		byTick[k] = append(byTick[k], p)
	}
	for k, group := range byTick {
		if len(group) > 1 {
			var who []string
			for _, p := range group {
				who = append(who, fmt.Sprintf("%s at %s", p.proc, p.tick.Format("15:04:05.000")))
			}
			t.Errorf("the tick at %s got %d passes: %s", k.Format("15:04:05"), len(group), strings.Join(who, ", "))
		}
	}
	// The schedule starts when the first pass (serve's pass at start-up,
	// off the grid) ends: the tick after that is the first one due.
	first, last := ps[0].tick.Add(ps[0].took).Truncate(every), ps[len(ps)-1].tick.Truncate(every)
	n := 0
	for k := first.Add(every); k.Before(last); k = k.Add(every) {
		n++
		if len(byTick[k]) > 0 {
			continue
		}
		busy := false
		for _, p := range ps {
			if !p.tick.After(k) && p.tick.Add(p.took).After(k) {
				busy = true
			}
		}
		for _, e := range excused {
			if !k.Before(e[0]) && !k.After(e[1]) {
				busy = true
			}
		}
		if !busy {
			t.Errorf("the tick at %s got no pass and no pass was running then", k.Format("15:04:05"))
		}
	}
	return n
}

// postEvent posts one Segment track call and returns the status code.
func postEvent(ctx context.Context, base, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/track", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth("wk", "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitUntil polls cond every 100ms until it holds or timeout passes, and
// reports whether it held.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sendCounts returns the number of sends per status.
func sendCounts(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	out := map[string]int{}
	rows, err := pool.Query(context.Background(), `SELECT status, count(*) FROM sends GROUP BY status`)
	if err != nil {
		t.Logf("counting sends: %v", err)
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = n
	}
	return out
}

// checkDelivery checks that the SMTP server received each message once,
// that every received message is a send recorded as sent (or unknown, the
// in-doubt state) with that Message-ID, and that every send recorded as
// sent was received. It returns the number of distinct messages.
func checkDelivery(t *testing.T, pool *pgxpool.Pool, srv *smtptest.Server) int {
	t.Helper()
	got := map[string]int{}
	for _, m := range srv.Messages() {
		ids := m.Header("Message-ID")
		if len(ids) != 1 {
			t.Fatalf("a message with Message-ID headers %q", ids)
		}
		got[strings.Trim(strings.TrimSpace(ids[0]), "<>")]++
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("Message-ID %s received %d times", id, n)
		}
	}
	rows, err := pool.Query(context.Background(), `SELECT coalesce(message_id, ''), status, contact_id, id FROM sends WHERE status IN ('sent', 'unknown', 'sending')`)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]string{}
	for rows.Next() {
		var mid, status string
		var c, id int64
		if err := rows.Scan(&mid, &status, &c, &id); err != nil {
			t.Fatal(err)
		}
		// A send in doubt never recorded its Message-ID: it is
		// <CONTACT.SEND.INSTALLATION@…>, so contact and send name it.
		recorded[strconv.FormatInt(c, 10)+"."+strconv.FormatInt(id, 10)] = status
		if mid != "" && !strings.HasPrefix(mid, strconv.FormatInt(c, 10)+"."+strconv.FormatInt(id, 10)+".") {
			t.Errorf("send %d.%d recorded Message-ID %s", c, id, mid)
		}
	}
	rows.Close()
	for id := range got {
		local, _, _ := strings.Cut(id, "@")
		parts := strings.SplitN(local, ".", 3)
		if len(parts) < 2 {
			t.Errorf("received Message-ID %s, not CONTACT.SEND.INSTALLATION", id)
			continue
		}
		if _, ok := recorded[parts[0]+"."+parts[1]]; !ok {
			t.Errorf("received %s, which no send records as sent or in doubt", id)
		}
	}
	received := map[string]bool{}
	for id := range got {
		local, _, _ := strings.Cut(id, "@")
		parts := strings.SplitN(local, ".", 3)
		received[strings.Join(parts[:min(2, len(parts))], ".")] = true
	}
	for mid, status := range recorded {
		if status == "sent" && !received[mid] {
			t.Errorf("send %s is recorded as sent but the server never received it", mid)
		}
	}
	return len(got)
}
