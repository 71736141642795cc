package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/demo"
	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/rule"
)

func cmdStages(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("stages", &cfg, databaseFlags...)
	asJSON := fs.Bool("json", false, "print a JSON object keyed by stage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	counts, err := st.StageCounts(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		m := make(map[string]int64, len(counts))
		for k, v := range counts {
			m[string(k)] = v
		}
		return json.NewEncoder(e.stdout).Encode(m)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	var total int64
	for _, s := range rule.Stages {
		fmt.Fprintf(tw, "%s\t%d\t\n", s, counts[s])
		total += counts[s]
	}
	fmt.Fprintf(tw, "total\t%d\t\n", total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if total == 0 {
		if hint := demoHint(ctx, st); hint != "" {
			fmt.Fprintln(e.stderr, "waymark: "+hint)
		}
	}
	return nil
}

// demoHint, for a database without contacts, says where the demo's are
// when they are on the same server ("" otherwise).
func demoHint(ctx context.Context, st *store.Store) string {
	pool := st.Pool()
	if pool == nil {
		return ""
	}
	c := pool.Config().ConnConfig.Copy()
	if c.Database == demo.Database {
		return ""
	}
	if exists, err := st.DatabaseExists(ctx, demo.Database); err != nil || !exists {
		return ""
	}
	c.Database = demo.Database
	conn, err := pgx.ConnectConfig(ctx, c)
	if err != nil {
		return ""
	}
	defer conn.Close(context.Background())
	n, err := store.New(conn).ContactRows(ctx)
	if err != nil || n == 0 {
		return ""
	}
	return fmt.Sprintf("no contacts in database %q; the demo's %s contacts are in database %q on the same server: DATABASE_URL=postgres://%s@%s:%d/%s waymark stages",
		pool.Config().ConnConfig.Database, humanize.Comma(n), demo.Database, c.User, c.Host, c.Port, demo.Database)
}
