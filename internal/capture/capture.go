// Package capture is the demo's built-in SMTP server: it accepts every
// message on a local port (github.com/emersion/go-smtp), keeps the most
// recent ones in memory, parsed, so the dashboard can show the emails
// Waymark sent, and counts all of them. Nothing is delivered anywhere.
//
// Memory is bounded: at most Options.Keep messages are kept (the oldest
// are forgotten first, the count goes on), each at most
// Options.MaxMessageBytes long.
package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/waymark/waymark/internal/clock"
)

// Options tune a Server; the zero value is usable.
type Options struct {
	// Addr to listen on; default "127.0.0.1:0" (a free port).
	Addr string
	// Keep is how many of the latest messages are kept; default 2,000.
	Keep int
	// MaxMessageBytes refuses larger messages (552); default 10 MiB.
	MaxMessageBytes int64
	// Domain the server greets with; default "capture.waymark.local".
	Domain string
	// Log receives errors (a message that does not parse is still kept).
	Log *slog.Logger
	// Now stamps received messages; default time.Now.
	Now func() time.Time
}

// Server is a running capture server. Its methods are safe for concurrent
// use.
type Server struct {
	opts Options
	ln   net.Listener
	srv  *smtp.Server
	done chan struct{}

	received atomic.Int64 // messages accepted since start
	conns    atomic.Int64

	mu   sync.RWMutex
	ring []*Mail // ring buffer of the latest messages
	next int     // index the next message goes to
	seq  int64   // the last message's ID
	subs []chan struct{}
}

// Start listens and serves until Close or ctx is done.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Keep <= 0 {
		opts.Keep = 2000
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 10 << 20
	}
	if opts.Domain == "" {
		opts.Domain = "capture.waymark.local"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("capture server: listening on %s: %w", opts.Addr, err)
	}
	s := &Server{opts: opts, ln: ln, done: make(chan struct{}), ring: make([]*Mail, 0, min(opts.Keep, 1024))}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = opts.Domain
	s.srv.MaxMessageBytes = opts.MaxMessageBytes
	s.srv.MaxRecipients = 100
	s.srv.ReadTimeout = 2 * time.Minute
	s.srv.WriteTimeout = 2 * time.Minute
	s.srv.AllowInsecureAuth = true
	s.srv.ErrorLog = slogLogger{opts.Log}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			opts.Log.Error("capture server stopped", "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// Addr is where the server listens (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is a WAYMARK_SMTP_URL for the server.
func (s *Server) URL() string { return "smtp://" + s.Addr() + "?tls=none" }

// Close stops the server and closes its connections. The messages stay
// readable.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	return err
}

// Received is the number of messages accepted since the server started,
// including those no longer kept.
func (s *Server) Received() int64 { return s.received.Load() }

// Connections is the number of SMTP connections accepted so far.
func (s *Server) Connections() int64 { return s.conns.Load() }

// Kept is how many messages are kept now.
func (s *Server) Kept() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.ring)
}

// List returns kept messages newest first, skipping offset and at most
// limit of them (limit <= 0: all), without their raw source.
func (s *Server) List(offset, limit int) []Mail {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := len(s.ring)
	if offset < 0 {
		offset = 0
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	var out []Mail
	for i := offset; i < n && len(out) < limit; i++ {
		// newest is just before next.
		m := *s.ring[(s.next-1-i+2*n)%n]
		m.Raw = nil
		out = append(out, m)
	}
	return out
}

// Since returns the kept messages received after the one with id, oldest
// first, at most limit of them (limit <= 0: all), with their raw source.
func (s *Server) Since(id int64, limit int) []Mail {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := len(s.ring)
	oldest := s.seq - int64(n) + 1
	if id+1 > oldest {
		oldest = id + 1
	}
	var out []Mail
	for k := oldest; k <= s.seq && (limit <= 0 || len(out) < limit); k++ {
		out = append(out, *s.ring[(s.next-1-int(s.seq-k)+2*n)%n])
	}
	return out
}

// Get returns the kept message with id, with its raw source.
func (s *Server) Get(id int64) (Mail, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := len(s.ring)
	if n == 0 || id <= 0 || id > s.seq || s.seq-id >= int64(n) {
		return Mail{}, false
	}
	// The newest (seq) is at next-1; id is seq-id places before it.
	m := s.ring[(s.next-1-int(s.seq-id)+2*n)%n]
	if m.ID != id {
		return Mail{}, false
	}
	return *m, true
}

// Wait blocks until at least n messages were received in total, or ctx is
// done.
func (s *Server) Wait(ctx context.Context, n int64) error {
	for {
		s.mu.Lock()
		if s.received.Load() >= n {
			s.mu.Unlock()
			return nil
		}
		ch := make(chan struct{})
		s.subs = append(s.subs, ch)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d messages (received %d): %w", n, s.received.Load(), ctx.Err())
		case <-ch:
		}
	}
}

// store keeps a received message.
func (s *Server) store(from string, to []string, raw []byte) {
	at := s.opts.Now() // when it was accepted, before parsing it
	m := Parse(raw)
	m.EnvelopeFrom, m.EnvelopeTo = from, to
	m.ReceivedAt = at
	if m.ParseError != "" {
		s.opts.Log.Warn("capture server: a message did not parse; kept as received", "from", from, "err", m.ParseError)
	}
	s.mu.Lock()
	s.seq++
	m.ID = s.seq
	if len(s.ring) < s.opts.Keep {
		s.ring = append(s.ring, m)
		s.next = len(s.ring) % s.opts.Keep
	} else {
		s.ring[s.next] = m
		s.next = (s.next + 1) % s.opts.Keep
	}
	s.received.Add(1)
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, ch := range subs {
		close(ch)
	}
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.conns.Add(1)
	return &session{s: b.s}, nil
}

// session is one SMTP connection's transaction state.
type session struct {
	s    *Server
	from string
	to   []string
}

func (x *session) Reset() { x.from, x.to = "", nil }

func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.from, x.to = from, nil
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !strings.Contains(to, "@") {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "a recipient needs an @"}
	}
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		// go-smtp answers 552 itself when the message is too large.
		return err
	}
	x.s.store(x.from, append([]string(nil), x.to...), raw)
	return nil
}

// slogLogger adapts slog to go-smtp's logger.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) {
	l.log.Debug("capture server: " + fmt.Sprintf(format, v...))
}

func (l slogLogger) Println(v ...any) { l.log.Debug("capture server: " + fmt.Sprintln(v...)) }
