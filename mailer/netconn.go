package mailer

import (
	"context"
	"net"
	"sync"
	"time"
)

// deadlineConn is the TCP connection under a go-mail client. It owns the
// connection's deadlines: every Read and Write may wait at most idle, and
// never past the current operation's hard deadline; cancelling the
// operation's context interrupts the I/O in flight. go-mail's own
// SetDeadline calls are ignored, so its single whole-session timeout does
// not apply.
//
// It also remembers whether a write failed during the operation: if the
// end of a message's data could not be written, the server cannot have
// accepted the message.
type deadlineConn struct {
	net.Conn
	idle time.Duration

	mu        sync.Mutex
	hard      time.Time // zero: none
	cancelled bool
	broken    bool // a read or write failed: the SMTP stream is out of step for good
	writeErr  error
}

var longAgo = time.Unix(1, 0)

// begin starts an operation bounded by ctx and hard (zero: ctx's deadline
// only). The returned func ends it.
func (c *deadlineConn) begin(ctx context.Context, hard time.Time) (end func()) {
	if d, ok := ctx.Deadline(); ok && (hard.IsZero() || d.Before(hard)) {
		hard = d
	}
	c.mu.Lock()
	c.hard, c.cancelled, c.writeErr = hard, false, nil
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cancelled = true
		_ = c.Conn.SetDeadline(longAgo)
		c.mu.Unlock()
	})
	return func() {
		stop()
		c.mu.Lock()
		c.hard, c.cancelled = time.Time{}, false
		c.mu.Unlock()
	}
}

func (c *deadlineConn) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled || c.broken {
		// fail at once: after a timeout go-mail still tries RSET, and
		// that must not wait a second CommandTimeout
		_ = c.Conn.SetDeadline(longAgo)
		return
	}
	d := time.Now().Add(c.idle)
	if !c.hard.IsZero() && c.hard.Before(d) {
		d = c.hard
	}
	_ = c.Conn.SetDeadline(d)
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.arm()
	n, err := c.Conn.Read(p)
	if err != nil {
		c.mu.Lock()
		c.broken = true
		c.mu.Unlock()
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.arm()
	n, err := c.Conn.Write(p)
	if err != nil {
		c.mu.Lock()
		c.broken = true
		if c.writeErr == nil {
			c.writeErr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// writeFailed reports whether a write failed since begin.
func (c *deadlineConn) writeFailed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeErr != nil
}

func (c *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (c *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }
