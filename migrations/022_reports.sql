-- Reports (issue 21): maintained rollups of what emails did and earned,
-- read by `waymark report`, /api/v1/reports and the dashboard. A refresh
-- (store.RefreshReports) adds to them what happened since the last one:
-- the emails sent since (by sends_sent_at, with a margin), the events and
-- conversions committed since (by the snapshot of the last refresh, as the
-- activity rollup's fold does), the offer draws and stage moves since (by
-- their time indexes, with a margin); a full refresh rebuilds them all.

-- Conversions carry the transaction that stored them, so that a refresh
-- takes exactly the ones committed since its last snapshot (the events'
-- ingest_xid trick). Attribution does not write the column.
ALTER TABLE conversions ADD COLUMN ingest_xid bigint;
ALTER TABLE conversions ALTER COLUMN ingest_xid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX conversions_ingest_xid ON conversions USING brin (ingest_xid);

-- One row per email sent (send ids are unique across contacts), its
-- dimensions fixed when it is first counted ('' and -1 for none) and its
-- outcomes: the first delivery report, the worst bounce (0 none, 1 soft,
-- 2 hard), a complaint, the first human open and click, an unsubscribe
-- from it, and the conversions credited to it.
CREATE TABLE report_emails (
    send_id       bigint      PRIMARY KEY,
    day           date        NOT NULL,
    sent_at       timestamptz NOT NULL,
    contact_id    bigint      NOT NULL,
    template      text        NOT NULL,
    sequence      text        NOT NULL,
    step          integer     NOT NULL,
    broadcast     text        NOT NULL,
    broadcast_run bigint,
    variant       smallint    NOT NULL,
    ab_test       boolean     NOT NULL,
    tone          text        NOT NULL,
    offer         text        NOT NULL,
    stage         text        NOT NULL,
    delivered_at  timestamptz,
    bounce        smallint    NOT NULL DEFAULT 0,
    complained    boolean     NOT NULL DEFAULT false,
    opened_at     timestamptz,
    clicked_at    timestamptz,
    unsubscribed  boolean     NOT NULL DEFAULT false,
    conversions   integer     NOT NULL DEFAULT 0,
    revenue       numeric     NOT NULL DEFAULT 0
) WITH (fillfactor = 80);
CREATE INDEX report_emails_test ON report_emails (broadcast_run, variant) WHERE ab_test;

-- The emails' figures per day sent and combination of dimensions: a
-- report sums a period's days and groups them by the dimension asked.
CREATE TABLE report_days (
    day          date    NOT NULL,
    template     text    NOT NULL,
    sequence     text    NOT NULL,
    step         integer NOT NULL,
    broadcast    text    NOT NULL,
    variant      smallint NOT NULL,
    tone         text    NOT NULL,
    stage        text    NOT NULL,
    offer        text    NOT NULL,
    sent         bigint  NOT NULL DEFAULT 0,
    delivered    bigint  NOT NULL DEFAULT 0,
    hard_bounced bigint  NOT NULL DEFAULT 0,
    soft_bounced bigint  NOT NULL DEFAULT 0,
    complained   bigint  NOT NULL DEFAULT 0,
    opened       bigint  NOT NULL DEFAULT 0,
    clicked      bigint  NOT NULL DEFAULT 0,
    unsubscribed bigint  NOT NULL DEFAULT 0,
    converted    bigint  NOT NULL DEFAULT 0,
    conversions  bigint  NOT NULL DEFAULT 0,
    revenue      numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (day, template, sequence, step, broadcast, variant, tone, stage, offer)
);

-- Each offer draw (drawn or held out) and the goal events of its contact
-- within report.HoldoutHorizon after it, credited to an email or not.
CREATE TABLE report_draws (
    contact_id  bigint      NOT NULL,
    offer       text        NOT NULL,
    at          timestamptz NOT NULL,
    drawn       boolean     NOT NULL,
    conversions integer     NOT NULL DEFAULT 0,
    revenue     numeric     NOT NULL DEFAULT 0,
    PRIMARY KEY (contact_id, offer, at)
);

-- The draws per day, offer and drawn: how many, how many converted, their
-- revenue and the sum of each draw's revenue squared (the holdout's
-- confidence interval).
CREATE TABLE report_holdout_days (
    day        date    NOT NULL,
    offer      text    NOT NULL,
    drawn      boolean NOT NULL,
    eligible   bigint  NOT NULL DEFAULT 0,
    converted  bigint  NOT NULL DEFAULT 0,
    revenue    numeric NOT NULL DEFAULT 0,
    revenue_sq numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (day, offer, drawn)
);

-- Every stage move with how long the contact had stayed in the stage it
-- left (since its previous move, or its creation): exact medians are read
-- from it. forward: to a later stage.
CREATE TABLE report_moves (
    contact_id bigint      NOT NULL,
    seq        bigint      NOT NULL,
    day        date        NOT NULL,
    from_stage text        NOT NULL,
    to_stage   text        NOT NULL,
    forward    boolean     NOT NULL,
    stay       interval    NOT NULL,
    PRIMARY KEY (contact_id, seq)
);
CREATE INDEX report_moves_day ON report_moves (day) INCLUDE (from_stage, to_stage, forward, stay);

-- Goal events per day (of the event), stage at the event and whether an
-- email was credited.
CREATE TABLE report_conversion_days (
    day         date    NOT NULL,
    stage       text    NOT NULL,
    credited    boolean NOT NULL,
    conversions bigint  NOT NULL DEFAULT 0,
    revenue     numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (day, stage, credited)
);

-- The last refresh: its snapshot (events and conversions committed after
-- it are the next refresh's) and its time (the application's clock).
CREATE TABLE report_state (
    id           boolean     PRIMARY KEY DEFAULT true CHECK (id),
    snapshot     text        NOT NULL DEFAULT '',
    refreshed_at timestamptz
);
INSERT INTO report_state DEFAULT VALUES;
