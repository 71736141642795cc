package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/store"
)

// cmdKeys manages the management API's keys: create (printed once, stored
// hashed), list and revoke.
func cmdKeys(ctx context.Context, e *env, args []string) error {
	const usage = "keys: usage: waymark keys create --name NAME [--read-only] | list | revoke NAME|ID|PREFIX"
	if len(args) == 0 || (args[0] != "create" && args[0] != "list" && args[0] != "revoke") {
		return errors.New(usage)
	}
	what := args[0]
	var cfg config.Config
	fs := e.flags("keys "+what, &cfg, databaseFlags...)
	name := new(string)
	readOnly := new(bool)
	if what == "create" {
		name = fs.String("name", "", "what the key is for (unique among keys in use)")
		readOnly = fs.Bool("read-only", false, "the key may only read (GET requests)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch {
	case what == "create" && *name == "":
		return errors.New("keys create: --name: required (what the key is for)")
	case what == "create" && fs.NArg() > 0, what == "list" && fs.NArg() > 0:
		return fmt.Errorf("keys %s: unexpected argument %q", what, fs.Arg(0))
	case what == "revoke" && fs.NArg() != 1:
		return errors.New("keys revoke: name one key (its name, id or prefix)")
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	switch what {
	case "create":
		key, err := st.CreateAPIKeyWith(ctx, *name, *readOnly)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", key)
		fmt.Fprintf(e.stderr, "API key %q created. It is shown only this once: only its hash is stored.\nUse it as 'Authorization: Bearer KEY' on /api/v1, or to log in to the dashboard.\n", *name)
		return nil
	case "revoke":
		k, err := st.RevokeAPIKey(ctx, fs.Arg(0))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("keys revoke: no key in use named %q (by name, id or prefix; see waymark keys list)", fs.Arg(0))
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked key %d %q (wmk_%s_…); its dashboard sessions are closed\n", k.ID, k.Name, k.Prefix)
		return nil
	}
	keys, err := st.APIKeys(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tACCESS\tCREATED\tLAST USED\tSTATUS")
	for _, k := range keys {
		access, status, used := "read-write", "active", "never"
		if k.ReadOnly {
			access = "read-only"
		}
		if k.RevokedAt != nil {
			status = "revoked " + k.RevokedAt.UTC().Format(time.DateTime)
		}
		if k.LastUsedAt != nil {
			used = k.LastUsedAt.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%d\t%s\twmk_%s_…\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, access, k.CreatedAt.UTC().Format(time.DateTime), used, status)
	}
	return tw.Flush()
}
