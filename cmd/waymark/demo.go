package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/waymark/waymark/internal/config"
)

func cmdDemo(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("demo", &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	if cfg.WriteKey == "" {
		cfg.WriteKey = randomKey("wk_")
	}
	log := e.logger()
	pool, err := connect(ctx, &cfg, log, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	return serve(ctx, &cfg, pool, log, func(addr string) {
		fmt.Fprintf(e.stdout, "Waymark demo is running.\n  ingestion: http://%s/v1/track (write key %s)\n", addr, cfg.WriteKey)
	})
}

func randomKey(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
