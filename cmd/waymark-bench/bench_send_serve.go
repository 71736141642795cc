package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/bench"
	"github.com/waymark/waymark/internal/capture"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/migrations"
)

// benchWriteKey is the ingestion write key of the benchmark's serve.
const benchWriteKey = "bench-write-key"

// Targets of the serve modes.
const (
	targetServeRSSMB     = 200
	targetEventToSMTPP99 = time.Second
)

// benchServe is a `waymark serve` child process of the benchmark.
type benchServe struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	done    chan struct{}
}

// startBenchServe starts `waymark serve` (the binary bin) with env (and nothing of
// this process's DATABASE_URL or WAYMARK_* variables), its log in a
// temporary file, and waits until it listens.
func startBenchServe(ctx context.Context, bin string, env map[string]string) (*benchServe, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	p := &benchServe{addr: addr, done: make(chan struct{})}
	p.logPath = filepath.Join(os.TempDir(), fmt.Sprintf("waymark-bench-serve-%d.log", os.Getpid()))
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, "serve")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "DATABASE_URL" || strings.HasPrefix(k, "WAYMARK_") {
			continue
		}
		p.cmd.Env = append(p.cmd.Env, kv)
	}
	env["WAYMARK_HTTP_ADDR"] = addr
	env["WAYMARK_PUBLIC_URL"] = "http://" + addr
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting waymark serve: %w", err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("waymark serve exited at start: %s", p.tail())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("waymark serve does not listen on %s after 30s: %s", addr, p.tail())
		}
	}
}

// tail is the end of the server's log.
func (p *benchServe) tail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func (p *benchServe) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the server to stop (SIGTERM), kills it after 10s, and removes
// its log.
func (p *benchServe) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	os.Remove(p.logPath)
}

// procMemKB reads a field (VmRSS, VmHWM) of /proc/pid/status in kB; 0 if
// unknown.
func procMemKB(pid int, field string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// serveEnv is the environment of a benchmark's `waymark serve`: no sweep
// during the run (the scheduler's first pass is an hour away), only the
// sender's own polling and wake-ups.
func serveEnv(dbURL string, cfg *config.Config) map[string]string {
	env := map[string]string{
		"DATABASE_URL":           dbURL,
		"WAYMARK_SMTP_URL":       cfg.SMTPURL,
		"WAYMARK_FROM":           cfg.From,
		"WAYMARK_CRON":           "@every 1h",
		"WAYMARK_WRITE_KEY":      benchWriteKey,
		"WAYMARK_POSTAL_ADDRESS": "Fernwood Supply, 12 Trail Road, Portland, OR 97201",
	}
	if cfg.DKIMKeyFile != "" {
		env["WAYMARK_DKIM_DOMAIN"], env["WAYMARK_DKIM_SELECTOR"], env["WAYMARK_DKIM_KEY_FILE"] = cfg.DKIMDomain, cfg.DKIMSelector, cfg.DKIMKeyFile
	}
	return env
}

// sendWithServe lets a `waymark serve` process send the due emails and
// reports its rate and memory: peak RSS, and RSS as the run progresses.
func (r *sendRun) sendWithServe(ctx context.Context, dbURL string, cfg *config.Config, pool *pgxpool.Pool) error {
	out := r.out
	start := time.Now()
	p, err := startBenchServe(ctx, r.bin, serveEnv(dbURL, cfg))
	if err != nil {
		return err
	}
	defer p.stop()
	pid := p.cmd.Process.Pid
	var (
		firstSent time.Time
		sent      int
		marks     []string
		nextMark  = 1
		rssPeak   int
	)
	deadline := time.Now().Add(10 * time.Minute)
	for sent < r.emails {
		if p.exited() {
			return fmt.Errorf("bench send: waymark serve exited after sending %d: %s", sent, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench send: waymark serve sent %d of %d in 10 minutes", sent, r.emails)
		}
		// Counting the sent rows is a scan that grows with the run (over
		// 100 ms of PostgreSQL's CPU near the end of 200,000): every
		// second, and every 100 ms once the end is near, so that the
		// benchmark does not take the server's CPU from what it measures.
		poll := time.Second
		if sent >= r.emails*95/100 {
			poll = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM sends WHERE status = 'sent'`).Scan(&sent); err != nil {
			return err
		}
		rss := procMemKB(pid, "VmRSS")
		rssPeak = max(rssPeak, rss)
		if sent > 0 && firstSent.IsZero() {
			firstSent = time.Now()
		}
		for nextMark <= 4 && sent >= r.emails*nextMark/4 {
			marks = append(marks, fmt.Sprintf("%d%%: %.0f MB", 25*nextMark, float64(rss)/1024))
			nextMark++
		}
	}
	end := time.Now()
	hwm := procMemKB(pid, "VmHWM")
	el := end.Sub(start)
	sendEl := end.Sub(firstSent)
	rate := float64(r.emails) / el.Seconds()
	fmt.Fprintf(out, "waymark serve (%d SMTP connections): sent %d in %.2fs from its start = %.0f emails/s (%.0f/s from the first email seen sent, polled every 1s, 100ms near the end)\n",
		r.conns, r.emails, el.Seconds(), rate, float64(r.emails)/max(sendEl.Seconds(), 1e-9))
	fmt.Fprintf(out, "  memory: peak RSS %.0f MB (VmHWM); RSS as the run progressed: %s\n", float64(hwm)/1024, strings.Join(marks, ", "))
	mark := "ok  "
	if float64(hwm)/1024 >= targetServeRSSMB {
		mark = "MISS"
	}
	fmt.Fprintf(out, "  %s peak RSS < %d MB (%.0f)\n", mark, targetServeRSSMB, float64(hwm)/1024)
	return nil
}

// benchSendLatency measures, through a `waymark serve` process, the time
// from an event being posted to the SMTP server accepting the 0-delay
// email it makes due.
func benchSendLatency(ctx context.Context, e *env, bin, server string, cfg config.Config, rate float64, duration time.Duration, keep bool) error {
	out := e.stdout
	n := int(rate * duration.Seconds())
	if n < 1 {
		return errors.New("bench send: -rate × -duration is less than one event")
	}
	db, err := bench.CreateDatabase(ctx, server, bench.DefaultName("latency"))
	if err != nil {
		return err
	}
	defer func() {
		if keep {
			fmt.Fprintf(out, "kept database %s\n", db.Name)
			return
		}
		if err := db.Drop(context.Background()); err != nil {
			fmt.Fprintf(e.stderr, "waymark-bench send: %v\n", err)
		}
	}()
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrations.Apply(ctx, pool); err != nil {
		return err
	}
	if err := bench.LoadSendContacts(ctx, pool, n); err != nil {
		return err
	}
	j, err := journey.Parse("bench-latency.yaml", []byte(bench.LatencyJourney))
	if err != nil {
		return fmt.Errorf("bench send: the latency journey: %w", err)
	}
	if _, err := store.New(pool).ApplyJourney(ctx, j, false); err != nil {
		return err
	}
	// The emails are received by the demo's capture server, stamped on
	// the wall clock when accepted.
	recv, err := capture.Start(ctx, capture.Options{Keep: n, Now: time.Now})
	if err != nil {
		return err
	}
	defer recv.Close()
	if cfg.From == "" {
		cfg.From = "Fernwood Supply <news@fernwood.example>"
	}
	cfg.SMTPURL = fmt.Sprintf("smtp://%s?tls=none&pool=8", recv.Addr())
	p, err := startBenchServe(ctx, bin, serveEnv(db.URL, &cfg))
	if err != nil {
		return err
	}
	defer p.stop()
	fmt.Fprintf(out, "%d contacts; waymark serve on %s, 8 SMTP connections to a go-smtp server in this process; posting %d cart_updated events at %.0f/s (open loop)\n",
		n, p.addr, n, rate)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	posted := make([]time.Time, n)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	interval := time.Duration(float64(time.Second) / rate)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if wait := time.Until(t0.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"userId":"cust-%d","event":"cart_updated","messageId":"lat-%d"}`, i+1, i+1)
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+p.addr+"/v1/track", bytes.NewReader([]byte(body)))
			req.Header.Set("Content-Type", "application/json")
			req.SetBasicAuth(benchWriteKey, "")
			mu.Lock()
			posted[i] = time.Now()
			mu.Unlock()
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("event %d: %v", i+1, err))
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("bench send: %d events not accepted, first: %s", len(failed), failed[0])
	}
	deadline := time.Now().Add(30 * time.Second)
	for recv.Received() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// When each recipient's first email was accepted.
	accepted := map[string]time.Time{}
	for _, m := range recv.List(0, 0) {
		for _, to := range m.EnvelopeTo {
			if t, ok := accepted[to]; !ok || m.ReceivedAt.Before(t) {
				accepted[to] = m.ReceivedAt
			}
		}
	}
	var lats []time.Duration
	missing := 0
	for i := 0; i < n; i++ {
		at, ok := accepted[fmt.Sprintf("cust-%d@example.com", i+1)]
		if !ok {
			missing++
			continue
		}
		lats = append(lats, at.Sub(posted[i]))
	}
	if len(lats) == 0 {
		return fmt.Errorf("bench send: no email arrived: %s", p.tail())
	}
	sort.Slice(lats, func(a, b int) bool { return lats[a] < lats[b] })
	q := func(f float64) time.Duration { return lats[min(len(lats)-1, int(f*float64(len(lats))))] }
	fmt.Fprintf(out, "event → SMTP accept: %d emails, p50 %s, p90 %s, p99 %s, max %s; %d not received within 30s\n",
		len(lats), ms(q(0.5)), ms(q(0.9)), ms(q(0.99)), ms(lats[len(lats)-1]), missing)
	mark := "ok  "
	if q(0.99) >= targetEventToSMTPP99 || missing > 0 {
		mark = "MISS"
	}
	fmt.Fprintf(out, "  %s p99 < %v with every email received (%s, %d missing)\n", mark, targetEventToSMTPP99, ms(q(0.99)), missing)
	return nil
}
