package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// post sends body and returns the status (0 if no answer came) and, for a
// status other than 200, the start of the answer.
func post(ctx context.Context, c *http.Client, url, writeKey string, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "@segment/analytics-node/2.1.2 (waymark bench)")
	req.SetBasicAuth(writeKey, "")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// IngestOptions describe a /v1/batch run.
type IngestOptions struct {
	URL      string // the server's base URL, http://host:port
	WriteKey string
	Gen      *Gen
	Events   int           // events to send
	Batch    int           // events per request
	Clients  int           // concurrent clients, each waiting for its answer before sending again
	Progress io.Writer     // if set, gets a line every Interval
	Interval time.Duration // default 5s
}

// IngestResult is what a /v1/batch run measured.
type IngestResult struct {
	Events, Requests int
	Acked            int    // events in requests answered 200
	Failed           int    // requests not answered 200
	FirstFailure     string // the first of them, for the report
	Bytes            int64  // request bodies
	Elapsed          time.Duration
	Latency          Latency // per request, from sending to the answer
	Windows          []float64
	CPU              CPUUse
}

// Rate is the acknowledged events per second.
func (r *IngestResult) Rate() float64 { return float64(r.Acked) / r.Elapsed.Seconds() }

// MinWindow is the lowest rate of the complete windows (0 if none).
func (r *IngestResult) MinWindow() float64 {
	if len(r.Windows) == 0 {
		return 0
	}
	m := r.Windows[0]
	for _, w := range r.Windows {
		m = min(m, w)
	}
	return m
}

// Ingest sends opt.Events events to /v1/batch in batches of opt.Batch
// from opt.Clients concurrent clients, each generating its next body while
// the others wait for their answers, as a fleet of analytics-node
// processes would.
func Ingest(ctx context.Context, opt IngestOptions) (*IngestResult, error) {
	if opt.Batch <= 0 || opt.Clients <= 0 || opt.Events <= 0 {
		return nil, fmt.Errorf("ingest: events, batch and clients must be positive")
	}
	if opt.Interval <= 0 {
		opt.Interval = 5 * time.Second
	}
	requests := (opt.Events + opt.Batch - 1) / opt.Batch
	res := &IngestResult{Events: opt.Events, Requests: requests}
	client := newClient(opt.Clients)
	defer client.CloseIdleConnections()
	url := opt.URL + "/v1/batch"

	var (
		next     atomic.Int64
		acked    atomic.Int64
		bytesOut atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, requests)
		wg       sync.WaitGroup
	)
	meter := StartMeter()
	start := time.Now()
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(opt.Interval)
		defer t.Stop()
		last, lastAt := int64(0), start
		for {
			select {
			case now := <-t.C:
				n := acked.Load()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				mu.Lock()
				res.Windows = append(res.Windows, rate)
				mu.Unlock()
				if opt.Progress != nil {
					fmt.Fprintf(opt.Progress, "  %6.1fs  %9d events stored  %8.0f events/s in the last %s\n", now.Sub(start).Seconds(), n, rate, opt.Interval)
				}
				last, lastAt = n, now
			case <-stopProgress:
				return
			}
		}
	}()
	for c := 0; c < opt.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for ctx.Err() == nil {
				r := int(next.Add(1)) - 1
				if r >= requests {
					return
				}
				from, to := r*opt.Batch, min((r+1)*opt.Batch, opt.Events)
				body = opt.Gen.AppendBatch(body[:0], from, to, time.Now())
				bytesOut.Add(int64(len(body)))
				t0 := time.Now()
				status, msg := post(ctx, client, url, opt.WriteKey, body)
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				if status != http.StatusOK {
					res.Failed++
					if res.FirstFailure == "" {
						res.FirstFailure = fmt.Sprintf("HTTP %d %s", status, msg)
					}
				}
				mu.Unlock()
				if status == http.StatusOK {
					acked.Add(int64(to - from))
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	close(stopProgress)
	<-progressDone
	res.CPU = meter.Stop()
	res.Acked = int(acked.Load())
	res.Bytes = bytesOut.Load()
	res.Latency = Summarise(lat)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// TrackOptions describe an open-loop /v1/track run.
type TrackOptions struct {
	URL      string
	WriteKey string
	Gen      *Gen
	First    int           // number of the first event, so runs do not collide
	Rate     float64       // requests per second
	Duration time.Duration // how long to send
	Warmup   time.Duration // sent at the same rate before, not measured
}

// TrackResult is what a /v1/track run measured.
type TrackResult struct {
	Requests int // measured requests scheduled
	Acked    int // answered 200 (warm-up included)
	Sent     int // sent (warm-up included)
	Failed   int
	First    string // first failure
	Elapsed  time.Duration
	// Latency runs from each request's scheduled time to its answer, so
	// that a stalled server or a late sender counts against it; Service
	// from the actual send.
	Latency, Service Latency
	Late             time.Duration // the most a send left after its scheduled time
	CPU              CPUUse
}

// Track sends single events to /v1/track at a fixed rate, whatever the
// server's answers (open loop: a slow answer does not delay the next
// request), and measures each latency from the time the request was due.
func Track(ctx context.Context, opt TrackOptions) (*TrackResult, error) {
	if opt.Rate <= 0 || opt.Duration <= 0 {
		return nil, fmt.Errorf("track: rate and duration must be positive")
	}
	interval := time.Duration(float64(time.Second) / opt.Rate)
	warm := int(opt.Warmup / interval)
	n := warm + int(opt.Duration/interval)
	res := &TrackResult{Requests: n - warm}
	client := newClient(512)
	defer client.CloseIdleConnections()
	url := opt.URL + "/v1/track"
	var (
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, n-warm)
		svc      = make([]time.Duration, 0, n-warm)
		wg       sync.WaitGroup
		meter    *Meter
		measured time.Time
	)
	start := time.Now().Add(10 * time.Millisecond)
	measured = start.Add(time.Duration(warm) * interval)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if i == warm {
			time.Sleep(time.Until(due))
			meter = StartMeter()
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if late := time.Since(due); i >= warm && late > res.Late {
			res.Late = late
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			e := opt.Gen.Event(opt.First + i)
			body := e.AppendJSON(make([]byte, 0, 640))
			t0 := time.Now()
			status, msg := post(ctx, client, url, opt.WriteKey, body)
			end := time.Now()
			mu.Lock()
			defer mu.Unlock()
			res.Sent++
			if status == http.StatusOK {
				res.Acked++
			} else {
				res.Failed++
				if res.First == "" {
					res.First = fmt.Sprintf("HTTP %d %s", status, msg)
				}
			}
			if i >= warm {
				lat = append(lat, end.Sub(due))
				svc = append(svc, end.Sub(t0))
			}
		}(i, due)
	}
	wg.Wait()
	res.Elapsed = time.Since(measured)
	if meter != nil {
		res.CPU = meter.Stop()
	}
	res.Latency = Summarise(lat)
	res.Service = Summarise(svc)
	return res, ctx.Err()
}
