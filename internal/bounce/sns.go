package bounce

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// SNSMessage is the JSON document Amazon SNS posts to an HTTP(S)
// subscriber: a notification, or a subscription's confirmation.
type SNSMessage struct {
	Type             string  `json:"Type"`
	MessageID        string  `json:"MessageId"`
	Token            string  `json:"Token"`
	TopicArn         string  `json:"TopicArn"`
	Subject          *string `json:"Subject"`
	Message          string  `json:"Message"`
	Timestamp        string  `json:"Timestamp"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
	SubscribeURL     string  `json:"SubscribeURL"`
	UnsubscribeURL   string  `json:"UnsubscribeURL"`
}

// The SNS message types.
const (
	SNSNotification        = "Notification"
	SNSSubscription        = "SubscriptionConfirmation"
	SNSUnsubscribeConfirm  = "UnsubscribeConfirmation"
	maxCertificateBytes    = 64 << 10
	maxCachedCertificates  = 32
	snsFetchTimeout        = 10 * time.Second
	snsConfirmationTimeout = 15 * time.Second
)

// StringToSign is what SNS signs: the named fields' values, each after its
// name, one per line, in this order (Subject only when present).
func (m *SNSMessage) StringToSign() (string, error) {
	var b strings.Builder
	add := func(k, v string) { b.WriteString(k + "\n" + v + "\n") }
	switch m.Type {
	case SNSNotification:
		add("Message", m.Message)
		add("MessageId", m.MessageID)
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
	case SNSSubscription, SNSUnsubscribeConfirm:
		add("Message", m.Message)
		add("MessageId", m.MessageID)
		add("SubscribeURL", m.SubscribeURL)
		add("Timestamp", m.Timestamp)
		add("Token", m.Token)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
	default:
		return "", fmt.Errorf("Type %q is not an SNS message type", m.Type)
	}
	return b.String(), nil
}

// snsHost is the host of SNS's certificates and subscription URLs:
// sns.<region>.amazonaws.com.
var snsHost = regexp.MustCompile(`^sns\.[a-z]{2}(-[a-z]+)+-\d\.amazonaws\.com$`)

// SNSURL checks that raw is an https URL on SNS's host
// (sns.<region>.amazonaws.com), the only place a certificate is fetched
// from or a subscription confirmed at.
func SNSURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", raw)
	}
	if u.Scheme != "https" || u.User != nil || (u.Port() != "" && u.Port() != "443") || !snsHost.MatchString(u.Hostname()) {
		return nil, fmt.Errorf("%q is not an https URL on sns.<region>.amazonaws.com", raw)
	}
	return u, nil
}

// SNSVerifier checks SNS message signatures (versions 1, SHA1withRSA, and
// 2, SHA256withRSA) with the signing certificate, fetched over https from
// SNS's host only and kept.
type SNSVerifier struct {
	// Client fetches certificates and confirms subscriptions
	// (http.DefaultClient if nil). Tests give one whose dialler reaches a
	// local TLS server.
	Client *http.Client
	// Now is the clock the certificate's validity is checked against.
	Now func() time.Time

	mu    sync.Mutex
	certs map[string]*x509.Certificate
}

func (v *SNSVerifier) client() *http.Client {
	if v.Client != nil {
		return v.Client
	}
	return http.DefaultClient
}

// ErrSignature is returned for a request whose signature does not verify.
var ErrSignature = errors.New("signature does not verify")

// Verify checks m's signature; an error says why it is refused.
func (v *SNSVerifier) Verify(ctx context.Context, m *SNSMessage) error {
	sts, err := m.StringToSign()
	if err != nil {
		return err
	}
	var (
		hash   crypto.Hash
		digest []byte
	)
	switch m.SignatureVersion {
	case "1":
		h := sha1.Sum([]byte(sts))
		hash, digest = crypto.SHA1, h[:]
	case "2":
		h := sha256.Sum256([]byte(sts))
		hash, digest = crypto.SHA256, h[:]
	case "":
		return fmt.Errorf("%w: no SignatureVersion", ErrUnsigned)
	default:
		return fmt.Errorf("SignatureVersion %q: only 1 and 2 are known", m.SignatureVersion)
	}
	if m.Signature == "" {
		return fmt.Errorf("%w: no Signature", ErrUnsigned)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return fmt.Errorf("%w: Signature is not base64", ErrSignature)
	}
	cert, err := v.certificate(ctx, m.SigningCertURL)
	if err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("the signing certificate's key is not RSA")
	}
	if err := rsa.VerifyPKCS1v15(pub, hash, digest, sig); err != nil {
		return ErrSignature
	}
	return nil
}

// certificate returns the certificate at raw, fetched once.
func (v *SNSVerifier) certificate(ctx context.Context, raw string) (*x509.Certificate, error) {
	u, err := SNSURL(raw)
	if err != nil {
		return nil, fmt.Errorf("SigningCertURL: %w", err)
	}
	if !strings.HasSuffix(u.Path, ".pem") {
		return nil, fmt.Errorf("SigningCertURL %q does not name a .pem file", raw)
	}
	key := u.String()
	v.mu.Lock()
	cert := v.certs[key]
	v.mu.Unlock()
	if cert == nil {
		if cert, err = v.fetch(ctx, key); err != nil {
			return nil, err
		}
		v.mu.Lock()
		if v.certs == nil || len(v.certs) >= maxCachedCertificates {
			v.certs = map[string]*x509.Certificate{}
		}
		v.certs[key] = cert
		v.mu.Unlock()
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("the signing certificate at %s is not valid now (valid %s to %s)", key, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	return cert, nil
}

func (v *SNSVerifier) fetch(ctx context.Context, u string) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, snsFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.noRedirects().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the signing certificate: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the signing certificate: %s answered %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCertificateBytes))
	if err != nil {
		return nil, fmt.Errorf("fetching the signing certificate: %w", err)
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("the signing certificate at %s is not a PEM certificate", u)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the signing certificate at %s: %w", u, err)
	}
	return cert, nil
}

// noRedirects is the client, refusing redirects: a certificate or a
// confirmation is fetched from the URL checked, nowhere else.
func (v *SNSVerifier) noRedirects() *http.Client {
	c := *v.client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// Confirm visits a verified SubscriptionConfirmation's SubscribeURL, which
// confirms the subscription at SNS.
func (v *SNSVerifier) Confirm(ctx context.Context, m *SNSMessage) error {
	u, err := SNSURL(m.SubscribeURL)
	if err != nil {
		return fmt.Errorf("SubscribeURL: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, snsConfirmationTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := v.noRedirects().Do(req)
	if err != nil {
		return fmt.Errorf("confirming the subscription: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("confirming the subscription: SNS answered %s", resp.Status)
	}
	return nil
}

// ParseSNS reads an SNS message.
func ParseSNS(body []byte) (*SNSMessage, error) {
	var m SNSMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("not an SNS message: %v", err)
	}
	if m.Type == "" {
		return nil, fmt.Errorf("not an SNS message: no Type")
	}
	return &m, nil
}
