package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/bench"
)

// measure is what one step of the path cost.
type measure struct {
	Wall time.Duration
	CPU  time.Duration // waymark's user and system time
	PG   time.Duration // PostgreSQL's processes' (-1: unknown)
	RSS  int64         // waymark's peak resident memory, bytes
	Out  string        // what waymark printed
}

func (m *measure) add(o measure) {
	m.Wall += o.Wall
	m.CPU += o.CPU
	if m.PG >= 0 && o.PG >= 0 {
		m.PG += o.PG
	} else {
		m.PG = -1
	}
	m.RSS = max(m.RSS, o.RSS)
	m.Out += o.Out
}

// waymark runs the real waymark binary, as a user would.
type waymark struct {
	bin     string
	verbose io.Writer // waymark's own output, as it runs (nil: kept quiet)
}

// build compiles ./cmd/waymark into dir, from the module this command is
// run in.
func build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "waymark")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/waymark")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/waymark (run waymark-bench from the repository, or pass -waymark): %v\n%s", err, out)
	}
	return bin, nil
}

// run runs waymark with args and env (added to this process's
// environment, less its DATABASE_URL and WAYMARK_ settings) and measures
// it.
func (w *waymark) run(ctx context.Context, env map[string]string, args ...string) (measure, error) {
	cmd := exec.CommandContext(ctx, w.bin, args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "DATABASE_URL" || strings.HasPrefix(k, "WAYMARK_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	if w.verbose != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, w.verbose), io.MultiWriter(&out, w.verbose)
	} else {
		cmd.Stdout, cmd.Stderr = &out, &out
	}
	meter := bench.StartMeter()
	start := time.Now()
	err := cmd.Run()
	m := measure{Wall: time.Since(start), Out: out.String(), PG: -1}
	use := meter.Stop()
	if use.Postgres >= 0 {
		m.PG = time.Duration(use.Postgres * float64(m.Wall))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		m.RSS = ru.Maxrss * 1024
	}
	if err != nil {
		return m, fmt.Errorf("waymark %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return m, nil
}

// sql runs statements on the database at url, one after another, and
// returns the time they took.
func sql(ctx context.Context, url string, stmts ...string) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	start := time.Now()
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return 0, fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	return time.Since(start), nil
}

// count runs a query returning one number.
func count(ctx context.Context, url, query string, args ...any) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// us is a duration per item in microseconds.
func us(d time.Duration, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(n)
}

func mb(b int64) string { return fmt.Sprintf("%d MB", b>>20) }

func secs(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
