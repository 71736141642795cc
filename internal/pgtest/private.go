package pgtest

// A PostgreSQL server of a test's own, for fault tests that crash or stop
// the server: the shared server other tests use is never touched.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/pgserver"
)

// Private starts a PostgreSQL server of the test's own and returns
// its URL (database waymark) and data directory. It is stopped when the
// test ends.
func Private(t *testing.T) (url, dataDir string) {
	t.Helper()
	if _, err := pgserver.FindBin("pg_ctl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dataDir = filepath.Join(t.TempDir(), "pg")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, err = pgserver.StartPrivate(ctx, dataDir, port, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("starting a private PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pgserver.Stop(ctx, dataDir); err != nil {
			t.Errorf("stopping the private PostgreSQL: %v", err)
		}
	})
	if err := pgserver.EnsureDatabase(ctx, url); err != nil {
		t.Fatal(err)
	}
	return url, dataDir
}

// PgCtl runs pg_ctl on dataDir (as the postgres user when running as root).
func PgCtl(t *testing.T, dataDir string, args ...string) {
	t.Helper()
	bin, err := pgserver.FindBin("pg_ctl")
	if err != nil {
		t.Fatal(err)
	}
	// The server pg_ctl starts inherits its output: a file, not a pipe
	// (the test would wait on the pipe for as long as the server runs).
	out, err := os.CreateTemp(t.TempDir(), "pg_ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, append([]string{"-D", dataDir, "-l", filepath.Join(dataDir, "server.log")}, args...)...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("pg_ctl %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}
