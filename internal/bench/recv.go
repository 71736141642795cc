package bench

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Receiver is a minimal SMTP server (go-smtp) that notes when each
// recipient's message was accepted: the end of the event → SMTP-accept
// latency measurement.
type Receiver struct {
	ln  net.Listener
	srv *smtp.Server

	mu   sync.Mutex
	at   map[string]time.Time // recipient → when its first message was accepted
	n    int
	wake chan struct{}
}

// StartReceiver listens on a free loopback port.
func StartReceiver() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{ln: ln, at: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	r.srv = smtp.NewServer(recvBackend{r})
	r.srv.Domain = "bench.local"
	r.srv.MaxMessageBytes = 32 << 20
	r.srv.ReadTimeout = time.Minute
	r.srv.WriteTimeout = time.Minute
	r.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Addr is host:port.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Close stops the server.
func (r *Receiver) Close() { _ = r.srv.Close() }

// Count is the number of messages accepted.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// At returns when rcpt's first message was accepted.
func (r *Receiver) At(rcpt string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.at[rcpt]
	return t, ok
}

type recvBackend struct{ r *Receiver }

func (b recvBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &recvSession{r: b.r}, nil
}

type recvSession struct {
	r  *Receiver
	to []string
}

func (s *recvSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *recvSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *recvSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	now := time.Now()
	s.r.mu.Lock()
	for _, to := range s.to {
		if _, ok := s.r.at[to]; !ok {
			s.r.at[to] = now
		}
	}
	s.r.n++
	s.r.mu.Unlock()
	return nil
}

func (s *recvSession) Reset()        { s.to = nil }
func (s *recvSession) Logout() error { return nil }

// DKIMKeyFile writes a fresh DKIM private key (kind rsa: 2048-bit RSA,
// PKCS#1; ed25519: PKCS#8) to a temporary file and returns its path.
func DKIMKeyFile(kind string) (string, error) {
	var block *pem.Block
	switch kind {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", err
		}
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return "", err
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	default:
		return "", fmt.Errorf("%q: want rsa or ed25519", kind)
	}
	f, err := os.CreateTemp("", "waymark-bench-dkim-*.pem")
	if err != nil {
		return "", err
	}
	if err := pem.Encode(f, block); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}

// LatencyJourney is the latency benchmark's journey: a cart_updated event
// starts a sequence whose first email (short) is due at once.
const LatencyJourney = `sequences:
  - name: cart
    trigger: {event: cart_updated}
    steps:
      - {after: 0s, template: cart}
sending:
  frequency_cap: {max: 0, per: 7d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - name: cart
    subject: "Your cart is saved"
    text: |
      Hi {{.Contact.FirstName | title | default "there"}}, we saved your cart.
      Unsubscribe: {{.UnsubscribeURL}}
`
