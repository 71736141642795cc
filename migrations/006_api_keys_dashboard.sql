-- Management API keys, dashboard sessions, and the daily rollups the
-- dashboard reads so its pages stay fast with millions of contacts.

-- API keys: only a SHA-256 of the key is kept. The key's public prefix
-- (wmk_<prefix>_<secret>) finds the row; the hash is then compared in
-- constant time.
CREATE TABLE api_keys (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL CHECK (name <> ''),
    prefix       text        NOT NULL UNIQUE,
    hash         bytea       NOT NULL,
    read_only    boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
-- A name is unique among the keys still in use.
CREATE UNIQUE INDEX api_keys_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Dashboard sessions opened by logging in with an API key. The cookie
-- holds a random token; only its hash is stored. Revoking the key ends
-- its sessions (the join in every lookup).
CREATE TABLE sessions (
    token_hash bytea       PRIMARY KEY,
    key_id     bigint      NOT NULL REFERENCES api_keys (id),
    csrf       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Indexes the rollup refresh reads recent activity through (a day or two
-- at a time), instead of scanning whole tables.
CREATE INDEX contacts_created ON contacts (created_at, id);
CREATE INDEX sends_sent_at ON sends (sent_at) WHERE status = 'sent';
CREATE INDEX events_engagement ON events (occurred_at)
    WHERE name IN ('email_opened', 'email_clicked', 'unsubscribed');
CREATE INDEX enrolments_converted ON enrolments (ended_at) WHERE status = 'converted';
CREATE INDEX offer_draws_at ON offer_draws (at);

-- Daily rollups (days in UTC). Each row counts what happened on its day;
-- a refresh recomputes the days since its last run (and the one before),
-- so each is bounded by an index range scan.

-- Stage moves by day, pair of stages and rule.
CREATE TABLE stats_moves (
    day        date   NOT NULL,
    from_stage text   NOT NULL,
    to_stage   text   NOT NULL,
    rule       text   NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (day, from_stage, to_stage, rule)
);

-- Entries into each stage by day (moves in; new contacts for awareness).
CREATE TABLE stats_entries (
    day   date   NOT NULL,
    stage text   NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (day, stage)
);

-- How long contacts stayed in a stage, counted on the day they left it, in
-- half-octave buckets of hours: bucket b holds stays of
-- [2^(b/2) - 1, 2^((b+1)/2) - 1) hours.
CREATE TABLE stats_stays (
    day    date     NOT NULL,
    stage  text     NOT NULL,
    bucket smallint NOT NULL,
    n      bigint   NOT NULL,
    PRIMARY KEY (day, stage, bucket)
);

-- Emails by day: sent (sent_at), opened and clicked (distinct sends with
-- an open or click event that day), unsubscribed (events).
CREATE TABLE stats_email (
    day          date   PRIMARY KEY,
    sent         bigint NOT NULL DEFAULT 0,
    opened       bigint NOT NULL DEFAULT 0,
    clicked      bigint NOT NULL DEFAULT 0,
    unsubscribed bigint NOT NULL DEFAULT 0
);

-- Sequence steps by day, template and tone: sent that day, sends opened
-- or clicked that day, enrolments converted (goal reached) that day,
-- counted on the last email the enrolment sent.
CREATE TABLE stats_steps (
    day       date    NOT NULL,
    sequence  text    NOT NULL,
    step      integer NOT NULL,
    template  text    NOT NULL,
    tone      text    NOT NULL,
    sent      bigint  NOT NULL DEFAULT 0,
    opened    bigint  NOT NULL DEFAULT 0,
    clicked   bigint  NOT NULL DEFAULT 0,
    converted bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (day, sequence, step, template, tone)
);

-- Offer draws by day: eligible contacts drawn or not, and how many of them
-- completed an order within 30 days after the draw.
CREATE TABLE stats_offers (
    day       date    NOT NULL,
    offer     text    NOT NULL,
    drawn     boolean NOT NULL,
    eligible  bigint  NOT NULL,
    converted bigint  NOT NULL,
    PRIMARY KEY (day, offer, drawn)
);

-- When the rollups were last refreshed, and the contacts per stage then.
CREATE TABLE stats_state (
    id           boolean     PRIMARY KEY DEFAULT true CHECK (id),
    refreshed_at timestamptz NOT NULL,
    stages       jsonb       NOT NULL
);
