package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/report"
)

func cmdReport(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("report", &cfg, databaseFlags...)
	from := fs.String("from", "", "the first day, YYYY-MM-DD in UTC (default: 30 days before --to)")
	to := fs.String("to", "", "the day after the last, YYYY-MM-DD in UTC (default: tomorrow, so today is included)")
	by := fs.String("by", "template", "group by template, step, sequence, broadcast, variant, tone, stage or offer")
	asJSON := fs.Bool("json", false, "print the report as JSON (the API's shape)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("report: unexpected argument %q", fs.Arg(0))
	}
	req := app.ReportRequest{From: *from, To: *to, By: *by, JSON: *asJSON, Now: clock.Now()}
	// Bad flags are refused before connecting.
	if _, err := report.ParsePeriod(req.From, req.To, req.Now); err != nil {
		return reportFlagError(err)
	}
	if _, err := report.ParseDimension(req.By); err != nil {
		return fmt.Errorf("report: --by: %w", err)
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	return reportFlagError(app.Report(ctx, st, req, e.stdout))
}

// reportFlagError names the flag of a bad report parameter.
func reportFlagError(err error) error {
	var pe *report.ParamError
	if errors.As(err, &pe) {
		return fmt.Errorf("report: --%s: %s", pe.Param, pe.Msg)
	}
	return err
}
