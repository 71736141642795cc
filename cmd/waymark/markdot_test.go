package main

import (
	"context"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/waymark/waymark/internal/smtptest"
)

// The sender hands a message to SMTP up to the final dot of its DATA while
// the message's 'sending' mark commits, and writes the dot only once the
// mark is durable. Here the sender is killed with SIGKILL in that window:
// the server holds its answer to the victim's RCPT TO until the mark is
// durable, so the victim is marked but its final dot was never written.
// It must end 'unknown' (in doubt, never resent) and never be received;
// every other send is received exactly once.
func TestKillNineBetweenMarkAndFinalDot(t *testing.T) {
	t.Parallel()
	const (
		n      = 300
		conns  = 2
		victim = "u150@example.com"
	)
	var (
		once    sync.Once
		held    = make(chan struct{})
		release = make(chan struct{})
	)
	smtp := smtptest.Start(t, smtptest.FailRcpt(func(rcpt string, attempt int) *gosmtp.SMTPError {
		if rcpt == victim && attempt == 1 {
			once.Do(func() { close(held) })
			<-release
		}
		return nil
	}))
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	env, bin, pool := sendingScene(t, smtp, conns, n)
	enrolWithoutSMTP(t, env)

	p := startTick(t, bin, env, "sender killed between a mark and its final dot")
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatalf("the sender never reached %s's RCPT TO", victim)
	}
	// The mark commits while the server holds its answer.
	const victimStatus = `SELECT s.status FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE c.email = $1`
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st string
		if err := pool.QueryRow(context.Background(), victimStatus, victim).Scan(&st); err != nil {
			t.Fatal(err)
		}
		if st == "sending" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's send is %q, never marked 'sending' while its RCPT TO was held", victim, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.kill(t)
	close(release)
	// The dead sender's last pipelined statements may still be running
	// in its backends (PostgreSQL reads them before it sees the client
	// gone): let them end before the recovery looks.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n := queryInt(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'`)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends still busy 30s after the kill", n)
		}
	}

	// The dead sender's lease expires; the next tick recovers and sends
	// the rest.
	if _, err := pool.Exec(context.Background(), `UPDATE leases SET expires_at = now() - interval '1s' WHERE name LIKE 'sender:%'`); err != nil {
		t.Fatal(err)
	}
	next := startTick(t, bin, env, "tick after the kill")
	next.wait(t, 90*time.Second)

	sent, unknown, unknownReceived := checkExactlyOnce(t, pool, smtp, n)
	if t.Failed() {
		t.Logf("statuses: %v", statusCounts(t, pool))
	}
	var st string
	if err := pool.QueryRow(context.Background(), victimStatus, victim).Scan(&st); err != nil {
		t.Fatal(err)
	}
	if st != "unknown" {
		t.Errorf("%s's send is %q, want unknown (marked on the wire when the sender died)", victim, st)
	}
	for _, m := range smtp.Messages() {
		if len(m.To) == 1 && m.To[0] == victim {
			t.Errorf("%s received a message, whose final dot was never written", victim)
		}
	}
	if unknown > conns {
		t.Errorf("%d unknown, want at most one per connection (%d)", unknown, conns)
	}
	t.Logf("killed between %s's mark and its final dot: %d sent, %d unknown (%d of them received), victim %s, never received", victim, sent, unknown, unknownReceived, st)
}
