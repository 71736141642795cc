package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/tracking"
)

// Without WAYMARK_SECRET every instance signs with the one secret kept in
// the database; once WAYMARK_SECRET is set, new links use it and links
// already sent keep working.
func TestLinkSignerSecret(t *testing.T) {
	t.Parallel()
	st := store.New(pgtest.Pool(t))
	ctx := context.Background()
	tok := tracking.Token{Kind: tracking.Unsubscribe, ContactID: 1, SendID: 2, Expires: time.Now().Add(time.Hour)}
	a, err := linkSigner(ctx, &config.Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	b, err := linkSigner(ctx, &config.Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	sent := a.Sign(tok)
	if b.Sign(tok) != sent {
		t.Fatal("two instances without WAYMARK_SECRET sign differently")
	}
	c, err := linkSigner(ctx, &config.Config{Secret: "configured-later-secret"}, st)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sign(tok) == sent {
		t.Error("WAYMARK_SECRET is not used for new links")
	}
	if got, err := c.Verify(tracking.Unsubscribe, sent, time.Now()); err != nil || got.ContactID != 1 {
		t.Errorf("a link sent before WAYMARK_SECRET was set: %+v, %v", got, err)
	}
	other, _ := tracking.NewSigner("some-other-secret-entirely")
	if _, err := c.Verify(tracking.Unsubscribe, other.Sign(tok), time.Now()); !errors.Is(err, tracking.ErrInvalid) {
		t.Errorf("a link of another secret: %v", err)
	}
}
