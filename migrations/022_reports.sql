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
-- dimensions fixed when it is first counted ('' and -1 for none; a
-- sequence's emails have no broadcast, an offer's are under the sequence
-- 'offer: NAME' as the dashboard's rollups name them) and its
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
    broadcast_run bigint      NOT NULL,
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

-- The emails' figures per day sent and combination of dimensions: a
-- report sums a period's days and groups them by the dimension asked; an
-- A/B test's variants are its run's test emails (revenue_sq: the sum of
-- each email's revenue squared, for the winner's margin).
CREATE TABLE report_days (
    day          date    NOT NULL,
    template     text    NOT NULL,
    sequence     text    NOT NULL,
    step         integer NOT NULL,
    broadcast    text    NOT NULL,
    broadcast_run bigint NOT NULL,
    variant      smallint NOT NULL,
    ab_test      boolean NOT NULL,
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
    revenue_sq   numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (day, template, sequence, step, broadcast, broadcast_run, variant, ab_test, tone, stage, offer)
);
CREATE INDEX report_days_test ON report_days (broadcast_run) WHERE ab_test;

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
-- left (since its previous move, or its creation), and that stay's bucket
-- (floor(8·log2(1 + seconds)): eight a doubling, in the order of stays).
-- The exact median stay of a period's moves forward (to a later stage)
-- is found without sorting them all: report_stays' counts per bucket say
-- which bucket holds the middle one, and only that bucket's moves are
-- read, in stay order, from report_moves_forward.
CREATE TABLE report_moves (
    contact_id bigint      NOT NULL,
    seq        bigint      NOT NULL,
    day        date        NOT NULL,
    from_stage text        NOT NULL,
    to_stage   text        NOT NULL,
    forward    boolean     NOT NULL,
    stay       interval    NOT NULL,
    bucket     smallint    NOT NULL,
    PRIMARY KEY (contact_id, seq)
);
CREATE INDEX report_moves_forward ON report_moves (from_stage, bucket, day) INCLUDE (stay) WHERE forward;

-- The moves forward per day, stage left and bucket of the stay.
CREATE TABLE report_stays (
    day    date     NOT NULL,
    stage  text     NOT NULL,
    bucket smallint NOT NULL,
    n      bigint   NOT NULL,
    PRIMARY KEY (day, stage, bucket)
);

-- The moves per day and stage: moves in, moves out forward and back.
CREATE TABLE report_stage_days (
    day       date   NOT NULL,
    stage     text   NOT NULL,
    entered   bigint NOT NULL DEFAULT 0,
    moved_on  bigint NOT NULL DEFAULT 0,
    regressed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, stage)
);

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
-- it are the next refresh's), its time and the time of the refresh before
-- it (the application's clock: the next refresh looks again at the sends,
-- draws and moves stamped since the earlier of the one before and the
-- last less a margin, for rows committed late — on the demo's fast clock
-- a few milliseconds are hours).
CREATE TABLE report_state (
    id           boolean     PRIMARY KEY DEFAULT true CHECK (id),
    snapshot     text        NOT NULL DEFAULT '',
    refreshed_at timestamptz,
    previous_at  timestamptz
);
INSERT INTO report_state DEFAULT VALUES;
