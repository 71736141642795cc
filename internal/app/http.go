package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/tracking"
	"github.com/waymark/waymark/internal/web"
	"github.com/waymark/waymark/rule"
)

// handler is everything Run serves: ingestion (its writer hands what it
// stored to the reactor), the links in emails, the health check, the
// management API and the dashboard, whose rollup refresher it starts
// (stopped with ctx, awaited through workers). closeWriter stops the
// writer once nothing is served.
func (a *App) handler(ctx context.Context, workers *sync.WaitGroup) (h http.Handler, closeWriter func(), err error) {
	cfg := a.cfg.Settings
	writer := ingest.NewWriter(a.store, a.log, ingest.WriterOptions{
		OnStored: func(_ context.Context, res ingest.Result) {
			a.reactor.Touch(res.Contacts, latestEvents(res), res.Names)
		},
	})
	mux := http.NewServeMux()
	mux.Handle("/v1/", ingest.NewHandler(cfg.WriteKey, writer, a.log, a.cfg.Now))
	// The providers' webhooks; unsubscribe, preferences, open and click
	// links; suppressions and Waymark's own bounce webhook, which records
	// reports as the providers' endpoints do.
	reports, err := a.mountWebhooks(mux)
	if err == nil {
		err = a.bounceListener(ctx, reports)
	}
	if err != nil {
		writer.Close()
		return nil, nil, err
	}
	track, err := a.trackingHandler(ctx, a.ownShape(reports))
	if err != nil {
		writer.Close()
		return nil, nil, err
	}
	for _, p := range track.Patterns() {
		mux.Handle(p, track)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.cfg.Pool.Ping(ctx); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	dash := web.New(web.Config{
		Store: a.store, Engine: a.engine, Log: a.log, CapturedMail: a.cfg.Mail, Now: a.cfg.Now, Sender: a.sender,
		PublicURL: cfg.PublicURL, SecureCookies: strings.HasPrefix(cfg.PublicURL, "https://"),
		RefreshReports: func(ctx context.Context, now time.Time, full bool) error {
			return RefreshReports(ctx, a.store, now, full)
		},
	})
	dash.Mount(mux)
	workers.Add(1)
	go func() { defer workers.Done(); dash.Run(ctx) }()
	return mux, writer.Close, nil
}

// latestEvents converts each touched contact's newest event for rules.
func latestEvents(res ingest.Result) map[int64]*rule.Event {
	out := make(map[int64]*rule.Event, len(res.Latest))
	for id, m := range res.Latest {
		// Properties are decoded only if a rule reads the event.
		out[id] = rule.EventJSON(m.Name, m.Timestamp, m.Properties)
	}
	return out
}

// trackingHandler serves the links in emails (unsubscribe, preferences,
// open pixel, click redirects), POST /v1/suppressions and the bounce
// webhook. What it records is handed to the reactor, so rules and goals
// see an unsubscription, an open or a click at once; reports records the
// bounce webhook's events.
func (a *App) trackingHandler(ctx context.Context, reports func(context.Context, tracking.BounceWebhook, string) (bool, error)) (*tracking.Handler, error) {
	signer, err := linkSigner(ctx, a.cfg.Settings, a.store)
	if err != nil {
		return nil, err
	}
	return tracking.NewHandler(signer, a.store, tracking.Options{
		WriteKey: a.cfg.Settings.WriteKey, Log: a.log, Now: a.cfg.Now, OnEvent: a.touch, Reports: reports,
	}), nil
}

// touch has the reactor evaluate a contact because of one event that
// tracking or a relay's report recorded.
func (a *App) touch(id int64, name string, props map[string]any, at time.Time) {
	a.reactor.Touch([]int64{id}, map[int64]*rule.Event{id: {Name: name, Properties: props, Timestamp: at}}, map[int64][]string{id: {name}})
}
