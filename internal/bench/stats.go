package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Latency summarises a set of latencies.
type Latency struct {
	N                        int
	P50, P95, P99, P999, Max time.Duration
}

// Summarise sorts ds and returns its percentiles.
func Summarise(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(ds))+0.5) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return Latency{N: len(ds), P50: at(0.50), P95: at(0.95), P99: at(0.99), P999: at(0.999), Max: ds[len(ds)-1]}
}

func (l Latency) String() string {
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  p99.9 %s  max %s", ms(l.P50), ms(l.P95), ms(l.P99), ms(l.P999), ms(l.Max))
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// Meter measures CPU use over a stretch of time: this process's, the
// PostgreSQL server's (local processes named postgres, polled so that
// backends that exit midway still count) and the whole machine's, from
// /proc (Linux only; zeros elsewhere).
type Meter struct {
	start      time.Time
	self       time.Duration
	busy, iow  time.Duration
	stop, done chan struct{}
	pg         map[int]time.Duration // pid → CPU time at first sight
	pgLast     map[int]time.Duration // pid → CPU time last seen
	pgSeen     bool
}

// StartMeter starts measuring.
func StartMeter() *Meter {
	m := &Meter{start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}), pg: map[int]time.Duration{}, pgLast: map[int]time.Duration{}}
	m.self = ProcessCPU()
	m.busy, m.iow = machineCPU()
	m.poll()
	go func() {
		defer close(m.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.poll()
			case <-m.stop:
				return
			}
		}
	}()
	return m
}

func (m *Meter) poll() {
	for pid, t := range postgresCPU() {
		if _, ok := m.pg[pid]; !ok {
			// A backend born during the run counts from zero; the server's
			// processes alive at the start from their time then.
			if m.pgSeen {
				m.pg[pid] = 0
			} else {
				m.pg[pid] = t
			}
		}
		m.pgLast[pid] = t
	}
	m.pgSeen = true
}

// Stop ends the measurement and returns the use, in cores (1.0 is one core
// busy the whole time).
func (m *Meter) Stop() CPUUse {
	close(m.stop)
	<-m.done
	m.poll()
	wall := time.Since(m.start).Seconds()
	busy, iow := machineCPU()
	u := CPUUse{Cores: runtime.NumCPU(), Postgres: -1}
	if wall <= 0 {
		return u
	}
	u.Self = (ProcessCPU() - m.self).Seconds() / wall
	u.Machine = (busy - m.busy).Seconds() / wall
	u.IOWait = (iow - m.iow).Seconds() / wall
	if len(m.pgLast) > 0 {
		var pg time.Duration
		for pid, t := range m.pgLast {
			pg += t - m.pg[pid]
		}
		u.Postgres = pg.Seconds() / wall
	}
	return u
}

// ProcessCPU is this process's CPU time so far.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU returns the busy and iowait time of all cores from /proc/stat.
func machineCPU() (busy, iowait time.Duration) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0
	}
	fs := strings.Fields(sc.Text())
	// cpu user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already counted in user.
	for i, v := range fs[1:] {
		if i >= 8 {
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		d := time.Duration(n) * 10 * time.Millisecond // USER_HZ is 100
		switch i {
		case 3: // idle
		case 4:
			iowait += d
		default:
			busy += d
		}
	}
	return busy, iowait
}

// postgresCPU returns the user+system time of each local process called
// postgres (the server and its backends).
func postgresCPU() map[int]time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := map[int]time.Duration{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || s[open+1:close] != "postgres" {
			continue
		}
		fs := strings.Fields(s[close+1:])
		if len(fs) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(fs[11], 10, 64)
		st, _ := strconv.ParseInt(fs[12], 10, 64)
		out[pid] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	return out
}

// CPUUse is CPU use over a stretch of time, in cores.
type CPUUse struct {
	Cores    int
	Self     float64 // this process: the server and the load generator
	Postgres float64 // processes named postgres (-1 if unknown)
	Machine  float64 // all busy time on the machine
	IOWait   float64
}

// Other is the CPU the rest of the machine used: neither this process nor
// PostgreSQL. Much of it means the figures are not to be trusted.
func (u CPUUse) Other() float64 { return max(0, u.Machine-u.Self-max(0, u.Postgres)) }

func (u CPUUse) String() string {
	pg := "?"
	if u.Postgres >= 0 {
		pg = fmt.Sprintf("%.2f", u.Postgres)
	}
	s := fmt.Sprintf("machine %.2f of %d cores busy (this process %.2f, postgres %s, other %.2f), iowait %.2f",
		u.Machine, u.Cores, u.Self, pg, u.Other(), u.IOWait)
	if u.Other() > 0.15 {
		s += fmt.Sprintf(" [WARNING: other processes took %.2f cores: these figures are not reliable]", u.Other())
	}
	return s
}

// DatabaseCPU returns the CPU time (user + system) used so far by the
// server processes connected to database name, by pid, read from /proc
// (nil elsewhere). A benchmark takes it before and after a measurement to
// report what PostgreSQL spent on it, apart from other databases' load.
func DatabaseCPU(ctx context.Context, pool *pgxpool.Pool, name string) map[int]time.Duration {
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, name)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := map[int]time.Duration{}
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fs) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(fs[11], 10, 64)
		st, _ := strconv.ParseInt(fs[12], 10, 64)
		out[int(pid)] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	return out
}

// CPUSince is the CPU time the processes of now used since before (a
// process absent before counts from zero).
func CPUSince(before, now map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range now {
		d += t - before[pid]
	}
	return d
}

// LoadAverage is the machine's one-minute load average ("" if unknown).
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// QuerySampler samples, every interval, which statements the server
// processes of one database are running, to show where PostgreSQL spends
// its time during a benchmark (pg_stat_statements needs a server restart
// to load; this needs nothing).
type QuerySampler struct {
	mu      sync.Mutex
	counts  map[string]int
	samples int
	stop    chan struct{}
	done    chan struct{}
}

// SampleQueries starts sampling database name's active statements.
func SampleQueries(ctx context.Context, pool *pgxpool.Pool, name string, interval time.Duration) *QuerySampler {
	s := &QuerySampler{counts: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rows, err := pool.Query(ctx, `SELECT regexp_replace(left(query, 70), '\s+', ' ', 'g') FROM pg_stat_activity
				WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()`, name)
			if err != nil {
				continue
			}
			qs, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.samples++
			for _, q := range qs {
				s.counts[q]++
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// Stop ends sampling and returns the statements seen most often, each with
// the average number of server processes running it.
func (s *QuerySampler) Stop(top int) []string {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	type qc struct {
		q string
		n int
	}
	var all []qc
	for q, n := range s.counts {
		all = append(all, qc{q, n})
	}
	slices.SortFunc(all, func(a, b qc) int { return b.n - a.n })
	var out []string
	for i, x := range all {
		if i == top || s.samples == 0 {
			break
		}
		out = append(out, fmt.Sprintf("%5.2f  %s", float64(x.n)/float64(s.samples), x.q))
	}
	return out
}
