package bounce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// mailgunWebhook is the JSON body of Mailgun's webhooks: the signature and
// one event.
type mailgunWebhook struct {
	Signature struct {
		Timestamp string `json:"timestamp"`
		Token     string `json:"token"`
		Signature string `json:"signature"`
	} `json:"signature"`
	EventData struct {
		ID        string  `json:"id"`
		Event     string  `json:"event"`
		Timestamp float64 `json:"timestamp"`
		Severity  string  `json:"severity"`
		Reason    string  `json:"reason"`
		Recipient string  `json:"recipient"`
		Delivery  struct {
			Code        json.Number `json:"code"`
			Message     string      `json:"message"`
			Description string      `json:"description"`
		} `json:"delivery-status"`
		Message struct {
			Headers struct {
				MessageID string `json:"message-id"`
			} `json:"headers"`
		} `json:"message"`
	} `json:"event-data"`
}

// MailgunSignature is what a Mailgun webhook is signed with: a timestamp
// and a random token, and the hex HMAC-SHA256 of the two under the
// webhook signing key.
type MailgunSignature struct {
	Timestamp, Token, Signature string
}

// ParseMailgun reads a Mailgun webhook: its signature, and its event as a
// report — failed (severity permanent: a hard bounce, temporary: soft),
// complained, delivered — or none for other events (opened, clicked,
// accepted...).
func ParseMailgun(body []byte) (MailgunSignature, []Report, error) {
	var w mailgunWebhook
	dec := json.NewDecoder(bytesReader(body))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return MailgunSignature{}, nil, fmt.Errorf("not a Mailgun webhook: %v", err)
	}
	sig := MailgunSignature{w.Signature.Timestamp, w.Signature.Token, w.Signature.Signature}
	e := w.EventData
	sec, frac := math.Modf(e.Timestamp)
	r := Report{Provider: "mailgun", ID: e.ID, MessageIDs: []string{e.Message.Headers.MessageID},
		At: time.Unix(int64(sec), int64(frac*1e9))}
	switch e.Event {
	case "failed":
		r.Kind, r.BounceType = Bounced, Soft
		if e.Severity == "permanent" {
			r.BounceType = Hard
		}
		r.Detail = detail(e.Reason, e.Delivery.Code.String(), e.Delivery.Description, e.Delivery.Message)
	case "complained":
		r.Kind = Complained
	case "delivered":
		r.Kind = Delivered
		r.Detail = detail(e.Delivery.Code.String(), e.Delivery.Message)
	default:
		return sig, nil, nil
	}
	if r.ID == "" {
		return sig, nil, fmt.Errorf("event-data.id: missing")
	}
	email, err := address(e.Recipient)
	if err != nil {
		return sig, nil, fmt.Errorf("event-data.recipient: %v", err)
	}
	r.Email = email
	return sig, []Report{r}, nil
}

// Verify checks the signature with the webhook signing key and the
// timestamp's freshness. (The token's replay is refused by the store,
// which remembers it.)
func (s MailgunSignature) Verify(key string, now time.Time, tolerance time.Duration) error {
	if s.Signature == "" || s.Token == "" || s.Timestamp == "" {
		return fmt.Errorf("%w: signature.timestamp, signature.token and signature.signature are required", ErrUnsigned)
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(s.Timestamp + s.Token))
	want := mac.Sum(nil)
	got, err := hex.DecodeString(s.Signature)
	if err != nil || !hmac.Equal(got, want) {
		return ErrSignature
	}
	return fresh(s.Timestamp, now, tolerance)
}
