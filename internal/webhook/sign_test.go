package webhook

import (
	"errors"
	"testing"
	"time"
)

// The specification's own example: its libraries and ours sign alike.
func TestSignMatchesTheSpecification(t *testing.T) {
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body)
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	if err := Verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,bad "+got, body, ts.Add(time.Minute), 5*time.Minute); err != nil {
		t.Errorf("verify the specification's example among two signatures: %v", err)
	}
	for name, c := range map[string]struct {
		id, ts, sig string
		body        string
		now         time.Time
		want        error
	}{
		"another body":    {"msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", got, `{"test": 2432232315}`, ts, ErrSignature},
		"another id":      {"msg_other", "1614265330", got, string(body), ts, ErrSignature},
		"stale":           {"msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", got, string(body), ts.Add(6 * time.Minute), ErrStale},
		"from the future": {"msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", got, string(body), ts.Add(-6 * time.Minute), ErrStale},
		"unsigned":        {"msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "", string(body), ts, ErrNoSignature},
	} {
		if err := Verify(key, c.id, c.ts, c.sig, []byte(c.body), c.now, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func TestParseSecretRefusesWhatIsNotAKey(t *testing.T) {
	for _, s := range []string{"", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ="} {
		if _, err := ParseSecret(s); err == nil {
			t.Errorf("ParseSecret(%q) accepted", s)
		}
	}
}
