package main

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/waymark/waymark/internal/config"
)

// cmdSuppressions lists the suppression list, adds an address to it by
// hand, or removes one added by hand.
func cmdSuppressions(ctx context.Context, e *env, args []string) error {
	what := args[0]
	var cfg config.Config
	fs := e.flags("suppressions "+what, &cfg, databaseFlags...)
	detail := new(string)
	if what == "add" {
		detail = fs.String("detail", "", "why (shown in the list)")
	}
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case what == "list" && len(pos) > 0:
		return fmt.Errorf("suppressions list: unexpected argument %q", pos[0])
	case what != "list" && len(pos) != 1:
		return fmt.Errorf("suppressions %s: name one email address", what)
	}
	var email string
	if what != "list" {
		email = strings.ToLower(strings.TrimSpace(pos[0]))
		if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
			return fmt.Errorf("suppressions %s: %q is not an email address", what, pos[0])
		}
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	switch what {
	case "add":
		d := *detail
		if d == "" {
			d = "added with waymark suppressions add"
		}
		n, err := st.Suppress(ctx, email, "manual", d)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "suppressed %s: never mailed again; %d queued %s cancelled\n", email, n, plural(n, "email", "emails"))
	case "remove":
		ok, err := st.Unsuppress(ctx, email)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("suppressions remove: %s is not on the list by hand (an unsubscription, bounce, complaint or erasure is not removed this way)", email)
		}
		fmt.Fprintf(e.stdout, "removed %s from the suppression list\n", email)
	default:
		tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "EMAIL\tREASON\tDETAIL\tSINCE")
		after, n := "", 0
		for {
			page, next, err := st.Suppressions(ctx, "email", after, 500)
			if err != nil {
				return err
			}
			for _, s := range page {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Email, s.Reason, s.Detail, s.CreatedAt.UTC().Format(time.DateTime))
				n++
			}
			if next == "" {
				break
			}
			after = next
		}
		if n == 0 {
			fmt.Fprintln(e.stdout, "the suppression list is empty")
			return nil
		}
		return tw.Flush()
	}
	return nil
}
