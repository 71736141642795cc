package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/auth"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

// A key is printed once, stored hashed, found again only with its exact
// text, and stops working (with its sessions) once revoked.
func TestAPIKeyLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tx := pgtest.Tx(t)
	s := store.New(tx)

	key, err := s.CreateAPIKey(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "wmk_") || len(key) != 4+12+1+48 {
		t.Fatalf("key %q: want wmk_<12 hex>_<48 hex>", key)
	}
	var stored int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE hash = sha256(convert_to($1, 'UTF8')) AND position($1 in name || prefix) = 0`, key).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 1 {
		t.Fatalf("want the key stored as its SHA-256 only, found %d rows", stored)
	}
	if _, err := s.CreateAPIKey(ctx, "ci"); !errors.Is(err, auth.ErrDuplicateName) {
		t.Fatalf("second key named ci: got %v, want ErrDuplicateName", err)
	}
	if _, err := s.CreateAPIKey(ctx, "  "); err == nil || !strings.Contains(err.Error(), "name") {
		t.Fatalf("empty name: got %v, want an error naming the name", err)
	}

	k, err := s.Authenticate(ctx, key)
	if err != nil || k.Name != "ci" || k.ReadOnly {
		t.Fatalf("Authenticate(key) = %+v, %v", k, err)
	}
	for _, bad := range []string{"", "wmk_", key[:len(key)-1] + "0", key + "0", strings.ToUpper(key), "Bearer " + key} {
		if bad == key {
			continue
		}
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, auth.ErrBadKey) {
			t.Errorf("Authenticate(%q) = %v, want ErrBadKey", bad, err)
		}
	}

	token, sess, err := s.CreateSession(ctx, k.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.SessionByToken(ctx, token)
	if err != nil || got.Key.ID != k.ID || got.CSRF != sess.CSRF || len(got.CSRF) != 64 {
		t.Fatalf("SessionByToken = %+v, %v; want key %d csrf %q", got, err, k.ID, sess.CSRF)
	}

	if _, err := s.RevokeAPIKey(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an unknown key: %v, want ErrNotFound", err)
	}
	if _, err := s.RevokeAPIKey(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, key); !errors.Is(err, auth.ErrBadKey) {
		t.Fatalf("revoked key authenticates: %v", err)
	}
	if _, err := s.SessionByToken(ctx, token); !errors.Is(err, auth.ErrBadKey) {
		t.Fatalf("revoked key's session still open: %v", err)
	}
	// The name is free again once revoked.
	if _, err := s.CreateAPIKey(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	keys, err := s.APIKeys(ctx)
	if err != nil || len(keys) != 2 || keys[1].RevokedAt == nil || keys[0].RevokedAt != nil {
		t.Fatalf("APIKeys = %+v, %v; want the new key then the revoked one", keys, err)
	}
}
