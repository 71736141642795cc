-- Transition rules, their versions, and every stage move with its reason.

CREATE TABLE rules (
    name        text        PRIMARY KEY,
    version     integer     NOT NULL,
    position    integer     NOT NULL,
    from_stages text[]      NOT NULL,
    to_stage    text        NOT NULL,
    condition   text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every version a rule ever had, so a transition's (rule, version) can
-- always be looked up.
CREATE TABLE rule_versions (
    name        text        NOT NULL,
    version     integer     NOT NULL,
    from_stages text[]      NOT NULL,
    to_stage    text        NOT NULL,
    condition   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    PRIMARY KEY (name, version)
);

CREATE TABLE transitions (
    contact_id   bigint      NOT NULL,
    seq          bigint      GENERATED ALWAYS AS IDENTITY,
    from_stage   text        NOT NULL,
    to_stage     text        NOT NULL,
    rule         text        NOT NULL,
    rule_version integer     NOT NULL,
    observed     jsonb       NOT NULL,
    trigger      text        NOT NULL CHECK (trigger IN ('event', 'sweep')),
    at           timestamptz NOT NULL,
    PRIMARY KEY (contact_id, seq)
);

CREATE INDEX transitions_at ON transitions (at);

-- Leases elect one leader for work that must run once per tick across all
-- instances (the sweep). A lease row with an expiry works through
-- connection poolers, unlike session advisory locks.
CREATE TABLE leases (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
