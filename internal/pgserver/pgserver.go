// Package pgserver finds a PostgreSQL server to talk to: the one named by
// DATABASE_URL, one answering on the default local address, or, when none
// answers, a private server started from the installed PostgreSQL binaries
// in a data directory of its own.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is where Waymark looks for PostgreSQL when DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/waymark?sslmode=disable"

// PrivatePort is the port of the private server started when nothing answers.
const PrivatePort = 54329

// MinSharedBuffers is the smallest shared_buffers Waymark is documented to
// need (README, "PostgreSQL settings"). Rules evaluated as events arrive
// read each touched contact's earlier events again; with PostgreSQL's
// stock 128 MB, under sustained ingestion those pages are evicted between
// reads, and each evaluation pays for reading them back from the kernel
// and for writing out the dirty pages it evicts to make room. Ingestion
// with rules ran at 73–74% of its speed without on 128 MB, 78% on 256 MB.
const MinSharedBuffers = 256 << 20

// Querier is what reading a setting needs: a pool, a connection or a
// transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SharedBuffers returns the server's shared_buffers in bytes.
func SharedBuffers(ctx context.Context, db Querier) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT pg_size_bytes(current_setting('shared_buffers'))`).Scan(&n)
	return n, err
}

// SettingsAdvice returns, when the server's settings are below what
// Waymark needs, what to change and how; "" when they are fine (or cannot
// be read).
func SettingsAdvice(ctx context.Context, db Querier) string {
	n, err := SharedBuffers(ctx, db)
	if err != nil || n >= MinSharedBuffers {
		return ""
	}
	return fmt.Sprintf("PostgreSQL's shared_buffers is %d MB, below the %d MB Waymark needs for rules evaluated as events arrive to keep up with ingestion: "+
		"run ALTER SYSTEM SET shared_buffers = '%dMB' as a superuser and restart PostgreSQL (README: PostgreSQL settings)",
		n>>20, MinSharedBuffers>>20, MinSharedBuffers>>20)
}

// Stop stops the private server with its data in dataDir.
func Stop(ctx context.Context, dataDir string) error {
	pgctl, err := FindBin("pg_ctl")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, pgctl, "-D", dataDir, "-m", "fast", "-w", "stop")
	if os.Geteuid() == 0 {
		if pu, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(pu.Uid)
			gid, _ := strconv.Atoi(pu.Gid)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		}
	}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Resolve returns a connection string for a database that exists and
// answers. With explicit set, it is used as is. Otherwise the default local
// server is tried, and if nothing answers a private server is started (or
// reused) under dataDir. The database named in the URL is created if it is
// missing.
func Resolve(ctx context.Context, explicit, dataDir string, log *slog.Logger) (string, error) {
	if explicit != "" {
		// Create the named database if the server answers and it is
		// missing; any problem is reported when connecting.
		_ = EnsureDatabase(ctx, explicit)
		return explicit, nil
	}
	if answers(ctx, DefaultURL) {
		if err := EnsureDatabase(ctx, DefaultURL); err != nil {
			return "", err
		}
		return DefaultURL, nil
	}
	u, err := StartPrivate(ctx, dataDir, PrivatePort, log)
	if err != nil {
		return "", fmt.Errorf("no PostgreSQL answers at %s and starting a private one failed: %w (set DATABASE_URL)", Redact(DefaultURL), err)
	}
	if err := EnsureDatabase(ctx, u); err != nil {
		return "", err
	}
	return u, nil
}

// DefaultDataDir is where the private server keeps its data.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		// PostgreSQL runs as the postgres user, who cannot reach root's
		// home.
		return "/var/lib/waymark/postgres"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "waymark", "postgres")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "waymark", "postgres")
	}
	return filepath.Join(os.TempDir(), "waymark-postgres")
}

func answers(ctx context.Context, connString string) bool {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return false
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// EnsureDatabase creates the database named in connString if it does not
// exist, connecting to the server's "postgres" database to do so.
func EnsureDatabase(ctx context.Context, connString string) error {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return fmt.Errorf("parsing DATABASE_URL: %w", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return nil
	}
	cfg.Database = "postgres"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", Redact(connString), err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("checking database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) && (pgErr.SQLState() == "42P04" || pgErr.SQLState() == "23505") {
		return nil // created concurrently
	}
	if err != nil {
		return fmt.Errorf("creating database %q: %w", name, err)
	}
	return nil
}

// FindBin locates a PostgreSQL server binary on PATH or under
// /usr/lib/postgresql/*/bin (newest version first).
func FindBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or under /usr/lib/postgresql/*/bin: install PostgreSQL's server package", name)
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// StartPrivate starts (or reuses) a private PostgreSQL server with its data
// in dataDir, listening on 127.0.0.1:port and a socket in dataDir.
// PostgreSQL refuses to run as root, so as root it runs as the "postgres"
// system user. The server is left running for the next caller.
func StartPrivate(ctx context.Context, dataDir string, port int, log *slog.Logger) (string, error) {
	u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/waymark?sslmode=disable", port)
	if answers(ctx, u) {
		return u, nil
	}
	initdb, err := FindBin("initdb")
	if err != nil {
		return "", err
	}
	pgctl, err := FindBin("pg_ctl")
	if err != nil {
		return "", err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			return "", errors.New("running as root and there is no \"postgres\" user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dataDir, err)
	}
	if cred != nil {
		// Every parent must be traversable by the postgres user.
		for d := dataDir; d != "/" && d != "."; d = filepath.Dir(d) {
			if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 && d != dataDir {
				_ = os.Chmod(d, st.Mode().Perm()|0o011)
			}
		}
		if err := os.Chown(dataDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return "", fmt.Errorf("handing %s to the postgres user: %w", dataDir, err)
		}
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err != nil {
		log.Info("initialising a private PostgreSQL", "data", dataDir)
		if err := run(initdb, "-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"); err != nil {
			return "", err
		}
	}
	log.Info("starting a private PostgreSQL", "data", dataDir, "port", port)
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=200 -c shared_buffers=%dMB", port, dataDir, MinSharedBuffers>>20)
	if err := run(pgctl, "-D", dataDir, "-l", filepath.Join(dataDir, "server.log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		return "", err
	}
	return u, nil
}

// WithDatabase returns connString naming database name instead: a URL's
// path, or a keyword/value string's dbname (a later one wins).
func WithDatabase(connString, name string) (string, error) {
	if u, err := url.Parse(connString); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	if strings.Contains(connString, "=") {
		return connString + " dbname=" + name, nil
	}
	return "", fmt.Errorf("%q is not a PostgreSQL connection string", connString)
}

// Redact writes a connection URL for a log or a report, its password
// hidden; anything else (a keyword/value string, which may hold one) is
// "the database".
func Redact(connString string) string {
	if u, err := url.Parse(connString); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "the database"
}
