// Package bouncetest signs provider webhook requests the way the
// providers do, with test keys, for tests of internal/bounce and of the
// running server: a stand-in for Amazon SNS's certificate host (a real
// TLS server on 127.0.0.1, which the verifier's client reaches for
// sns.<region>.amazonaws.com), SendGrid's ECDSA signature and Mailgun's
// HMAC.
package bouncetest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/bounce"
)

// SNS stands in for Amazon SNS: it signs messages with a key of its own,
// serves that key's certificate at any .pem path, and records the
// subscription confirmations it is sent, over https on 127.0.0.1 under
// the names sns.us-west-2.amazonaws.com and sns.us-east-1.amazonaws.com.
type SNS struct {
	key      *rsa.PrivateKey
	certPEM  []byte
	srv      *httptest.Server
	verifier *bounce.SNSVerifier

	mu        sync.Mutex
	confirmed []string
	fetches   int
}

// SNSHosts are the hosts the stand-in answers for.
var SNSHosts = []string{"sns.us-west-2.amazonaws.com", "sns.us-east-1.amazonaws.com"}

// NewSNS starts the stand-in; it stops with the test.
func NewSNS(tb testing.TB) *SNS {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sns.amazonaws.com"}}, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	s := &SNS{key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{tlsCert(tb, SNSHosts)}}
	s.srv.StartTLS()
	tb.Cleanup(s.srv.Close)
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(s.srv.TLS.Certificates[0].Certificate[0])
	pool.AddCert(leaf)
	addr := s.srv.Listener.Addr().String()
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		// Every connection goes to the stand-in, whatever host the URL
		// names: a URL the verifier should not have fetched fails its
		// TLS check (the certificate names only SNSHosts).
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	s.verifier = &bounce.SNSVerifier{Client: &http.Client{Transport: transport, Timeout: 5 * time.Second}}
	return s
}

func (s *SNS) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, ".pem"):
		s.mu.Lock()
		s.fetches++
		s.mu.Unlock()
		_, _ = w.Write(s.certPEM)
	case r.URL.Query().Get("Action") == "ConfirmSubscription":
		s.mu.Lock()
		s.confirmed = append(s.confirmed, "https://"+r.Host+r.URL.RequestURI())
		s.mu.Unlock()
		_, _ = w.Write([]byte(`<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:us-west-2:123456789012:MyTopic:1</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>`))
	default:
		http.NotFound(w, r)
	}
}

// Verifier is a verifier whose client reaches the stand-in.
func (s *SNS) Verifier() *bounce.SNSVerifier { return s.verifier }

// Confirmations are the subscription confirmation URLs visited.
func (s *SNS) Confirmations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.confirmed...)
}

// CertificateFetches counts the certificate downloads.
func (s *SNS) CertificateFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// Sign signs m with SignatureVersion version ("1": SHA1, "2": SHA256).
func (s *SNS) Sign(tb testing.TB, m *bounce.SNSMessage, version string) {
	tb.Helper()
	m.SignatureVersion = version
	sts, err := m.StringToSign()
	if err != nil {
		tb.Fatal(err)
	}
	var sig []byte
	if version == "1" {
		h := sha1.Sum([]byte(sts))
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA1, h[:])
	} else {
		h := sha256.Sum256([]byte(sts))
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, h[:])
	}
	if err != nil {
		tb.Fatal(err)
	}
	m.Signature = base64.StdEncoding.EncodeToString(sig)
}

// tlsCert is a self-signed server certificate for hosts.
func tlsCert(tb testing.TB, hosts []string) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// SendGridKey is a test Signed Event Webhook key pair; Public is the
// verification key as SendGrid shows it (base64 of the DER public key).
type SendGridKey struct {
	Private *ecdsa.PrivateKey
	Public  string
}

// NewSendGridKey makes a key pair.
func NewSendGridKey(tb testing.TB) SendGridKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return SendGridKey{Private: k, Public: base64.StdEncoding.EncodeToString(der)}
}

// Sign returns the signature header's value for body sent at timestamp
// (Unix seconds).
func (k SendGridKey) Sign(tb testing.TB, timestamp string, body []byte) string {
	tb.Helper()
	h := sha256.Sum256(append([]byte(timestamp), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.Private, h[:])
	if err != nil {
		tb.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// MailgunSignature is Mailgun's signature of timestamp and token under
// key: hex HMAC-SHA256.
func MailgunSignature(key, timestamp, token string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(timestamp + token))
	return hex.EncodeToString(m.Sum(nil))
}
