package bounce

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SendGrid's Signed Event Webhook headers.
const (
	SendGridSignatureHeader = "X-Twilio-Email-Event-Webhook-Signature"
	SendGridTimestampHeader = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// ParseSendGridKey reads the Signed Event Webhook's verification key as
// SendGrid shows it (base64 of the DER public key), or PEM.
func ParseSendGridKey(s string) (*ecdsa.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if block, _ := pem.Decode([]byte(s)); block != nil {
		der = block.Bytes
	} else {
		var err error
		if der, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("not base64 nor PEM")
		}
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a public key: %v", err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("not an ECDSA P-256 public key")
	}
	return pub, nil
}

// VerifySendGrid checks a Signed Event Webhook request: the ECDSA
// signature (base64 of ASN.1) of SHA-256 over the timestamp header's value
// followed by the body, and a timestamp within tolerance of now.
func VerifySendGrid(key *ecdsa.PublicKey, signature, timestamp string, body []byte, now time.Time, tolerance time.Duration) error {
	if signature == "" || timestamp == "" {
		return fmt.Errorf("%w: the %s and %s headers are required", ErrUnsigned, SendGridSignatureHeader, SendGridTimestampHeader)
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return fmt.Errorf("%w: %s is not base64", ErrSignature, SendGridSignatureHeader)
	}
	h := sha256.New()
	h.Write([]byte(timestamp))
	h.Write(body)
	if !ecdsa.VerifyASN1(key, h.Sum(nil), sig) {
		return ErrSignature
	}
	return fresh(timestamp, now, tolerance)
}

// fresh checks a signed Unix timestamp (seconds) against now.
func fresh(timestamp string, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(strings.TrimSpace(timestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrStale, timestamp)
	}
	at := time.Unix(sec, 0)
	if d := now.Sub(at); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %s, %s from now (at most %s is accepted)", ErrStale, at.UTC().Format(time.RFC3339), d.Round(time.Second), tolerance)
	}
	return nil
}

// sendgridEvent is one event of SendGrid's Event Webhook.
type sendgridEvent struct {
	Email     string `json:"email"`
	Timestamp int64  `json:"timestamp"`
	SMTPID    string `json:"smtp-id"`
	Event     string `json:"event"`
	EventID   string `json:"sg_event_id"`
	Type      string `json:"type"`
	Reason    string `json:"reason"`
	Status    string `json:"status"`
	Response  string `json:"response"`
	Class     string `json:"bounce_classification"`
}

// ParseSendGrid reads an Event Webhook call (a JSON array of events):
// bounce (type "bounce" hard, "blocked" soft), spamreport (complaint) and
// delivered; other events (processed, deferred, dropped, open, click...)
// give no report.
func ParseSendGrid(body []byte) ([]Report, error) {
	var events []sendgridEvent
	if err := json.Unmarshal(body, &events); err != nil {
		return nil, fmt.Errorf("not a SendGrid event list: %v", err)
	}
	var out []Report
	for i, e := range events {
		r := Report{Provider: "sendgrid", ID: e.EventID, MessageIDs: []string{e.SMTPID}, At: time.Unix(e.Timestamp, 0)}
		switch e.Event {
		case "bounce":
			r.Kind, r.BounceType = Bounced, Hard
			if e.Type == "blocked" {
				r.BounceType = Soft
			}
			r.Detail = detail(e.Class, e.Status, e.Reason)
		case "spamreport":
			r.Kind = Complained
		case "delivered":
			r.Kind = Delivered
			r.Detail = detail(e.Response)
		default:
			continue
		}
		if r.ID == "" {
			return nil, fmt.Errorf("[%d].sg_event_id: missing", i)
		}
		email, err := address(e.Email)
		if err != nil {
			return nil, fmt.Errorf("[%d].email: %v", i, err)
		}
		r.Email = email
		out = append(out, r)
	}
	return out, nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
