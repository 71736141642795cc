// Package webhook tells other systems what happened in Waymark, as the
// Standard Webhooks specification says (https://www.standardwebhooks.com):
// each delivery carries webhook-id (stable across retries, so receivers
// de-duplicate), webhook-timestamp (Unix seconds) and webhook-signature
// ("v1," and the base64 HMAC-SHA256 of id.timestamp.body with the
// endpoint's secret), so receivers can verify it with the specification's
// published libraries.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts a secret as the specification writes it.
const SecretPrefix = "whsec_"

// ParseSecret returns the key of a secret written "whsec_<base64>" (the
// prefix is optional); it refuses an empty or short key.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), SecretPrefix))
	if s == "" {
		return nil, errors.New("the secret is empty (want whsec_ and base64, e.g. from `openssl rand -base64 32`)")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("the secret is not whsec_ and base64: %v", err)
	}
	if len(key) < 24 {
		return nil, fmt.Errorf("the secret's key is %d bytes; at least 24 (32 recommended)", len(key))
	}
	return key, nil
}

// Sign returns the webhook-signature header of body sent as id at ts.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Errors Verify returns.
var (
	ErrNoSignature = errors.New("webhook-id, webhook-timestamp or webhook-signature missing")
	ErrStale       = errors.New("webhook-timestamp too far from now")
	ErrSignature   = errors.New("no valid v1 signature")
)

// Verify checks a delivery as a receiver does: the timestamp within
// tolerance of now, and one of the space-separated signatures (a sender
// rotating its secret may send several) the v1 signature of id, timestamp
// and body with key.
func Verify(key []byte, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	if id == "" || timestamp == "" || signatures == "" {
		return ErrNoSignature
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrNoSignature, timestamp)
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := Sign(key, id, ts, body)
	for _, s := range strings.Fields(signatures) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrSignature
}
