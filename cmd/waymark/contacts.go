package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/waymark/waymark/internal/config"
)

func cmdContacts(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "erase" && args[0] != "export") {
		return errors.New("contacts: usage: waymark contacts erase|export CONTACT (id, userId, anonymousId or email)")
	}
	what := args[0]
	var cfg config.Config
	fs := e.flags("contacts "+what, &cfg, databaseFlags...)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("contacts %s: name one contact", what)
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	id, err := contactRef(ctx, st, "contacts "+what, fs.Arg(0))
	if err != nil {
		return err
	}
	if what == "export" {
		out, err := st.Export(ctx, id)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", out)
		return err
	}
	email, err := st.Erase(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "contact %d erased: its data and events are gone", id)
	if email != "" {
		fmt.Fprint(e.stdout, "; its address is kept only as a hash on the suppression list, so it is never mailed again")
	}
	fmt.Fprintln(e.stdout)
	return nil
}
