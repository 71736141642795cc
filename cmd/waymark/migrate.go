package main

import (
	"context"
	"fmt"

	"github.com/waymark/waymark/internal/config"
)

func cmdMigrate(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("migrate", &cfg, databaseFlags...)
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	done()
	fmt.Fprintln(e.stdout, "database is up to date")
	return nil
}
