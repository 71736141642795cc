-- The key that signs the links in emails (unsubscribe, preferences, open
-- pixel, click redirects) when WAYMARK_SECRET is not set: generated once by
-- the first instance that needs it and shared by every instance, so links
-- keep working across restarts. One row.
CREATE TABLE link_secret (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    secret     text        NOT NULL CHECK (length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
