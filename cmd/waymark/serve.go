package main

import (
	"context"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/pgserver"
)

func cmdServe(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("serve", &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	if cfg.WriteKey == "" {
		return &config.Error{Var: "WAYMARK_WRITE_KEY", Msg: "missing: serve needs a write key for the ingestion API"}
	}
	log := e.logger()
	pool, err := app.Connect(ctx, &cfg, log, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	if advice := pgserver.SettingsAdvice(ctx, pool); advice != "" {
		log.Warn(advice)
	}
	a, err := app.New(ctx, app.Config{Settings: &cfg, Pool: pool, Log: log, Getenv: e.getenv})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
