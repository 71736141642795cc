package main

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/waymark/waymark/internal/web"
)

// mountWeb adds the management API and the dashboard to mux and starts
// their rollup refresher (stopped with ctx, awaited through workers).
func mountWeb(ctx context.Context, mux *http.ServeMux, s *server, opts serveOptions, workers *sync.WaitGroup) *web.Server {
	dash := web.New(web.Config{
		Store: s.store, Engine: s.engine, Log: s.log, CapturedMail: opts.Mail, Now: opts.Now,
		PublicURL: s.cfg.PublicURL, SecureCookies: strings.HasPrefix(s.cfg.PublicURL, "https://"),
	})
	dash.Mount(mux)
	workers.Add(1)
	go func() { defer workers.Done(); dash.Run(ctx) }()
	return dash
}
