package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Events are the event types an endpoint can ask for.
var Events = []string{"stage_changed", "enrolled", "email_sent", "email_bounced", "email_complained", "unsubscribed", "offer_given", "conversion"}

// Endpoint is a receiver of webhooks, as the journey file declares it.
type Endpoint struct {
	Name   string
	URL    string
	Events []string
	// SecretEnv names the environment variable holding the secret
	// (whsec_…): the journey file never holds it.
	SecretEnv string `json:"secret_env"`
}

// Delivery is one event for one endpoint, from the outbox.
type Delivery struct {
	ID       int64
	MsgID    string // webhook-id: the same on every attempt
	Endpoint string
	Type     string
	Body     []byte // {"type":…,"timestamp":…,"data":{…}}
	// URL and SecretEnv are the endpoint's, as applied.
	URL, SecretEnv string
	Attempts       int // made before this one
	Created        time.Time
}

// Result is how an attempt ended.
type Result struct {
	ID       int64
	Endpoint string
	// Status: delivered, retry (again at NextAt) or failed (retries used
	// up: given up, recorded).
	Status     string
	NextAt     time.Time
	HTTPStatus int
	Latency    time.Duration
	Error      string
	At         time.Time
}

// Outbox is what the deliverer needs from storage: the outbox rows are
// written in the transactions of the changes they report.
type Outbox interface {
	// ClaimDeliveries claims up to limit deliveries due at now of
	// enabled endpoints, for holder, until the lease runs out, each with
	// its endpoint's URL and secret variable as applied.
	ClaimDeliveries(ctx context.Context, holder string, limit int, now time.Time, lease time.Duration) ([]Delivery, error)
	// RecordDeliveries records the attempts' results, and disables an
	// endpoint that has failed without a success for disableAfter.
	RecordDeliveries(ctx context.Context, rs []Result, disableAfter time.Duration) error
	// ExpandWebhookBatches turns up to limit batches of deliveries (a
	// statement's stage moves for one endpoint) into a delivery each,
	// and says how many deliveries.
	ExpandWebhookBatches(ctx context.Context, limit int) (int64, error)
}

// Retries is the back-off after each failed attempt, as the Standard
// Webhooks specification suggests: about a day in all; after the last, a
// delivery fails.
var Retries = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// DisableAfter is how long an endpoint may fail, without one success,
// before it is disabled (shown so in the API and dashboard; re-enabled by
// hand or by a journey that changes it).
const DisableAfter = 24 * time.Hour

// Deliverer posts due deliveries to their endpoints, signed.
type Deliverer struct {
	outbox Outbox
	getenv func(string) string
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	holder string
	// Batch and Parallel: deliveries claimed at a time, and posted at
	// once; Lease: how long a claim lasts (another instance takes over a
	// dead one's claims after it), longer than a batch can take.
	Batch, Parallel int
	Lease           time.Duration
}

// NewDeliverer returns a deliverer of outbox's deliveries; getenv reads
// the endpoints' secrets.
func NewDeliverer(outbox Outbox, getenv func(string) string, client *http.Client, log *slog.Logger, now func() time.Time, holder string) *Deliverer {
	// One round of posts a claim: a claim lasts three times the
	// client's timeout.
	lease := 3 * client.Timeout
	if lease <= 0 {
		lease = 2 * time.Minute
	}
	return &Deliverer{outbox: outbox, getenv: getenv, client: client, log: log, now: now, holder: holder, Batch: 16, Parallel: 16, Lease: lease}
}

// key is an endpoint's secret as read here, or why it cannot be.
type key struct {
	key []byte
	err error
}

// keys reads the secrets of a batch's endpoints (from the variables the
// journey names, on each pass: the journey may change). One missing or
// malformed here keeps the reason, and its deliveries fail with it
// (retried: the variable may be set and the instance restarted).
func (d *Deliverer) keys(batch []Delivery) map[string]key {
	out := map[string]key{}
	for _, dl := range batch {
		if _, ok := out[dl.SecretEnv]; ok {
			continue
		}
		k, err := ParseSecret(d.getenv(dl.SecretEnv))
		if err != nil {
			err = fmt.Errorf("%s on this instance: %w", dl.SecretEnv, err)
		}
		out[dl.SecretEnv] = key{k, err}
	}
	return out
}

// Run delivers until ctx is done, looking for due deliveries every poll
// (and at once after a batch that found some).
func (d *Deliverer) Run(ctx context.Context, poll time.Duration) {
	for {
		n, err := d.DeliverDue(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Error("webhooks: delivering", "err", err)
		}
		wait := poll
		if n > 0 && err == nil {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// DeliverDue makes one pass: claims a batch, posts it, records the
// results; it returns how many it attempted.
func (d *Deliverer) DeliverDue(ctx context.Context) (int, error) {
	// Batches first (a few at a time: a thousand deliveries each), so
	// that what they hold is claimed in its turn.
	if _, err := d.outbox.ExpandWebhookBatches(ctx, 4); err != nil {
		return 0, err
	}
	now := d.now()
	batch, err := d.outbox.ClaimDeliveries(ctx, d.holder, d.Batch, now, d.Lease)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	keys := d.keys(batch)
	results := make([]Result, len(batch))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, d.Parallel))
	for i := range batch {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = d.attempt(ctx, keys[batch[i].SecretEnv], &batch[i])
		}()
	}
	wg.Wait()
	return len(batch), d.outbox.RecordDeliveries(ctx, results, DisableAfter)
}

// attempt posts one delivery and says how it ended: a 2xx delivers; any
// other answer, or none, is retried on the back-off until it is used up.
func (d *Deliverer) attempt(ctx context.Context, ep key, dl *Delivery) Result {
	r := Result{ID: dl.ID, Endpoint: dl.Endpoint}
	// The webhook-timestamp is when the request leaves, by the wall
	// clock receivers check it against (the product's clock may be a
	// simulation's or a backtest's).
	sent := time.Now()
	err := ep.err
	var req *http.Request
	if err == nil {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(dl.Body))
	}
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "Waymark-Webhooks/1")
		req.Header.Set("webhook-id", dl.MsgID)
		req.Header.Set("webhook-timestamp", fmt.Sprint(sent.Unix()))
		req.Header.Set("webhook-signature", Sign(ep.key, dl.MsgID, sent, dl.Body))
		start := time.Now()
		var resp *http.Response
		resp, err = d.client.Do(req)
		r.Latency = time.Since(start)
		if err == nil {
			r.HTTPStatus = resp.StatusCode
			snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				r.Status, r.At = "delivered", d.now()
				return r
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(snippet)))
		}
	}
	r.Error, r.At = err.Error(), d.now()
	if dl.Attempts < len(Retries) {
		r.Status, r.NextAt = "retry", r.At.Add(Retries[dl.Attempts])
	} else {
		r.Status = "failed"
	}
	return r
}
