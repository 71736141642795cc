// Package smtptest runs an in-process SMTP server on 127.0.0.1 for tests,
// built on github.com/emersion/go-smtp. It records what it receives and can
// misbehave on request (temporary and permanent rejections, dropped
// connections, a server that never greets, slow answers) so that the
// mailer's failure handling is tested against real SMTP.
package smtptest

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Option changes how a Server behaves.
type Option func(*config)

type config struct {
	failRcpt      func(rcpt string, attempt int) *smtp.SMTPError
	failData      func(msg Message, attempt int) *smtp.SMTPError
	dropAfterData func(msg Message, attempt int) bool
	neverGreet    func(conn int) bool
	delay         time.Duration
	user, pass    string
	requireAuth   bool
	startTLS      *tls.Certificate
	implicitTLS   *tls.Certificate
	domain        string
}

// FailRcpt decides the answer to each RCPT TO: a non-nil error rejects the
// recipient with it. attempt counts RCPT commands for that recipient
// (case-insensitive) since the server started, from 1.
func FailRcpt(f func(rcpt string, attempt int) *smtp.SMTPError) Option {
	return func(c *config) { c.failRcpt = f }
}

// FailData decides the answer once a message was fully received: a non-nil
// error rejects it (for example 554 5.7.1). attempt counts deliveries of
// messages with the same Message-ID header (or of all messages when there is
// none), from 1. A rejected message is not recorded.
func FailData(f func(msg Message, attempt int) *smtp.SMTPError) Option {
	return func(c *config) { c.failData = f }
}

// DropAfterData closes the connection after every message was fully
// received (the final dot was read) without answering it. The message is
// recorded, as a real server may well have queued it.
func DropAfterData() Option {
	return DropAfterDataIf(func(Message, int) bool { return true })
}

// DropAfterDataIf is DropAfterData for the messages f selects; attempt is
// counted as for FailData.
func DropAfterDataIf(f func(msg Message, attempt int) bool) Option {
	return func(c *config) { c.dropAfterData = f }
}

// NeverGreet accepts TCP connections and never says anything on them.
func NeverGreet() Option {
	return NeverGreetIf(func(int) bool { return true })
}

// NeverGreetIf is NeverGreet for the connections f selects; conn counts
// accepted connections from 1.
func NeverGreetIf(f func(conn int) bool) Option {
	return func(c *config) { c.neverGreet = f }
}

// Delay waits d after a message was received before answering DATA.
func Delay(d time.Duration) Option {
	return func(c *config) { c.delay = d }
}

// RequireAuth offers AUTH PLAIN (also without TLS) and refuses MAIL FROM
// until the client authenticated as user with pass.
func RequireAuth(user, pass string) Option {
	return func(c *config) { c.requireAuth, c.user, c.pass = true, user, pass }
}

// StartTLS offers STARTTLS with cert (see SelfSignedCert).
func StartTLS(cert tls.Certificate) Option {
	return func(c *config) { c.startTLS = &cert }
}

// ImplicitTLS speaks TLS from the first byte (SMTPS, port 465 style).
func ImplicitTLS(cert tls.Certificate) Option {
	return func(c *config) { c.implicitTLS = &cert }
}

// Domain sets the name the server greets with (default "smtptest.local").
func Domain(name string) Option {
	return func(c *config) { c.domain = name }
}

// Server is a running test SMTP server. Its methods are safe for concurrent use.
type Server struct {
	tb  testing.TB
	cfg config
	ln  net.Listener
	srv *smtp.Server
	fwd *chanListener

	conns atomic.Int64

	mu       sync.Mutex
	msgs     []Message
	changed  chan struct{} // closed and replaced whenever msgs grows
	rcptSeen map[string]int
	dataSeen map[string]int
	held     []net.Conn
	open     []net.Conn
	closed   bool

	wg sync.WaitGroup
}

// Start starts a server on 127.0.0.1:0; it is closed when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	cfg := config{domain: "smtptest.local"}
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("smtptest: listening: %v", err)
	}
	s := &Server{
		tb:       tb,
		cfg:      cfg,
		ln:       ln,
		changed:  make(chan struct{}),
		rcptSeen: map[string]int{},
		dataSeen: map[string]int{},
	}
	s.fwd = &chanListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}

	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = cfg.domain
	s.srv.AllowInsecureAuth = true
	s.srv.MaxMessageBytes = 32 << 20
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	if cfg.startTLS != nil {
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cfg.startTLS}, MinVersion: tls.VersionTLS12}
	}

	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.srv.Serve(s.fwd) }()
	go func() { defer s.wg.Done(); s.accept() }()
	tb.Cleanup(s.Close)
	return s
}

func (s *Server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		n := int(s.conns.Add(1))
		s.mu.Lock()
		s.open = append(s.open, c)
		s.mu.Unlock()
		if s.cfg.neverGreet != nil && s.cfg.neverGreet(n) {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.held = append(s.held, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); _, _ = io.Copy(io.Discard, c) }()
			continue
		}
		if s.cfg.implicitTLS != nil {
			c = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*s.cfg.implicitTLS}, MinVersion: tls.VersionTLS12})
		}
		select {
		case s.fwd.conns <- c:
		case <-s.fwd.done:
			c.Close()
			return
		}
	}
}

// Close stops the server and drops its connections. Start registers it as
// a cleanup; calling it earlier simulates a server going away.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	held := s.held
	s.held = nil
	s.mu.Unlock()

	s.ln.Close()
	s.fwd.Close()
	_ = s.srv.Close()
	for _, c := range held {
		c.Close()
	}
	s.wg.Wait()
}

// DropConnections closes every connection accepted so far, without a
// word, as a server restart or a NAT timeout would; the server keeps
// accepting new ones.
func (s *Server) DropConnections() {
	s.mu.Lock()
	open := s.open
	s.open = nil
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is the server's IP address, 127.0.0.1.
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Connections is the number of TCP connections accepted so far.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Count is the number of messages recorded so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Messages returns the recorded messages in the order they were received.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitFor waits until at least n messages were recorded and returns them;
// it fails the test when timeout passes first. Call it from the test's
// goroutine.
func (s *Server) WaitFor(n int, timeout time.Duration) []Message {
	s.tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			msgs := append([]Message(nil), s.msgs...)
			s.mu.Unlock()
			return msgs
		}
		changed, got := s.changed, len(s.msgs)
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			s.tb.Fatalf("smtptest: waited %v for %d messages, got %d", timeout, n, got)
			return nil
		}
	}
}

func (s *Server) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) rcptAttempt(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(rcpt)
	s.rcptSeen[k]++
	return s.rcptSeen[k]
}

func (s *Server) dataAttempt(m Message) int {
	key := ""
	if ids := m.Header("Message-ID"); len(ids) > 0 {
		key = ids[0]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dataSeen[key]++
	return s.dataSeen[key]
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s      *Server
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if !ss.s.cfg.requireAuth {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.s.cfg.requireAuth || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != ss.s.cfg.user || pass != ss.s.cfg.pass {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.cfg.requireAuth && !ss.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.from = from
	ss.to = nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	attempt := ss.s.rcptAttempt(to)
	if f := ss.s.cfg.failRcpt; f != nil {
		if err := f(to, attempt); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{From: ss.from, To: append([]string(nil), ss.to...), Data: data}
	attempt := ss.s.dataAttempt(m)
	if f := ss.s.cfg.dropAfterData; f != nil && f(m, attempt) {
		ss.s.record(m)
		_ = ss.conn.Conn().Close()
		return errors.New("smtptest: connection dropped after DATA")
	}
	if d := ss.s.cfg.delay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ss.s.fwd.done:
			t.Stop()
		}
	}
	if f := ss.s.cfg.failData; f != nil {
		if err := f(m, attempt); err != nil {
			return err
		}
	}
	ss.s.record(m)
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// chanListener hands the connections the accept loop lets through to go-smtp.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// SMTPError is a shorthand for building rejections in FailRcpt and FailData:
// SMTPError(550, "5.1.1", "no such user").
func SMTPError(code int, enhanced, msg string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: msg, EnhancedCode: smtp.EnhancedCodeNotSet}
	if enhanced != "" {
		var ec smtp.EnhancedCode
		parts := strings.Split(enhanced, ".")
		if len(parts) == 3 {
			for i, p := range parts {
				n, err := strconv.Atoi(p)
				if err != nil {
					return e
				}
				ec[i] = n
			}
			e.EnhancedCode = ec
		}
	}
	return e
}
