// Package web is Waymark's management API (/api/v1, JSON, bearer API keys)
// and its dashboard (/dashboard, server-rendered HTML from embedded
// templates, SVG charts drawn on the server, readable without JavaScript).
//
// Using it from other code: h := web.New(web.Config{Store: st, Engine: eng,
// Log: log, CapturedMail: fn}) returns a *web.Server, an http.Handler
// serving "/api/v1/", "/dashboard/" and a redirect from "/"; mount it with
// h.Mount(mux) and run h.Run(ctx) in a goroutine to keep the dashboard's
// daily rollups fresh (every Config.RefreshEvery, default 30 s; h.Refresh
// does one pass). Config.CapturedMail, when set (the demo), is a
// func(ctx) ([]web.Mail, error) listing the emails a capture server
// received, newest first; the dashboard shows them at /dashboard/mail. API
// keys are created with the store's CreateAPIKey(ctx, name) (plaintext
// string, err error) — the plaintext is returned once, only a SHA-256 is
// stored — or `waymark keys create --name NAME`; `waymark serve` and
// `waymark demo` mount the handler through internal/app (app.Config.Mail
// carries CapturedMail).
package web
