-- This installation's id, generated once by the first instance that needs
-- it (like link_secret) and shared by every instance: it makes Message-IDs
-- globally unique (RFC 5322, 3.6.4), so a second installation, a recreated
-- database or a demo never puts a Message-ID on the wire that another
-- email already carried. One row.
CREATE TABLE installation (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    uid        text        NOT NULL CHECK (uid ~ '^[a-z0-9]{8,32}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
