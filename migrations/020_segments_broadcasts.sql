-- Segments and broadcasts (issue 19).

-- A segment is a named condition in the rule language, applied from the
-- journey file like rules.
CREATE TABLE segments (
    name       text        PRIMARY KEY,
    position   integer     NOT NULL,
    condition  text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Who is in each segment, as of the contact's last evaluation (events and
-- the scheduled sweep evaluate segments with the rules, from the same
-- facts). Keyed by contact, like every per-contact table; the second index
-- lists a segment's members in id order (keyset pages) and counts them.
CREATE TABLE segment_members (
    contact_id bigint      NOT NULL,
    segment    text        NOT NULL,
    since      timestamptz NOT NULL,
    PRIMARY KEY (contact_id, segment)
);
CREATE INDEX segment_members_segment ON segment_members (segment, contact_id);

-- Each segment's size a day, for the dashboard's trend: scheduled passes
-- write the day's row (at most every few minutes; recorded_at says when),
-- so the last one of a day stays.
CREATE TABLE segment_sizes (
    segment     text        NOT NULL,
    day         date        NOT NULL,
    members     bigint      NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (segment, day)
);

-- A broadcast: one email to an audience, once (send_at) or on a schedule.
-- source says who manages it: a journey file (apply replaces those) or the
-- API. state: draft (no time yet), scheduled, paused (nothing of it goes
-- out until resumed), cancelled (its queued sends were cancelled).
-- scheduled_at is when it was last given its time, so a schedule's first
-- run is the first after it.
CREATE TABLE broadcasts (
    name         text        PRIMARY KEY,
    source       text        NOT NULL CHECK (source IN ('journey', 'api')),
    position     integer     NOT NULL DEFAULT 0,
    definition   jsonb       NOT NULL,
    state        text        NOT NULL DEFAULT 'draft'
                 CHECK (state IN ('draft', 'scheduled', 'paused', 'cancelled')),
    state_reason text,
    scheduled_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One run of a broadcast: its send_at, or one firing of its schedule. The
-- unique key makes a second tick, a second instance or a restart find the
-- run instead of starting another. scheduled_for is the run's time: an
-- instant, or (local) a wall time, stored as if in UTC, sent at that hour
-- in each contact's own zone. definition is the broadcast as the run
-- started. The audience is resolved once (resolved_at); an A/B test is
-- decided at decide_at (decided_at, decision: the figures and the rule).
CREATE TABLE broadcast_runs (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    broadcast     text        NOT NULL,
    scheduled_for timestamptz NOT NULL,
    local         boolean     NOT NULL,
    definition    jsonb       NOT NULL,
    started_at    timestamptz NOT NULL,
    resolved_at   timestamptz,
    audience      bigint,
    decide_at     timestamptz,
    decided_at    timestamptz,
    decision      jsonb,
    UNIQUE (broadcast, scheduled_for)
);

-- A broadcast's email is a send like a sequence's (the same queue, claim,
-- policies and crash behaviour), once per (run, contact): sends_broadcast_once.
-- variant is the A/B variant sent (0 without a test; NULL while the rest
-- of the audience waits for the test's winner); ab_test marks the test
-- share. planned_at is the contact's time for the run before any throttle
-- spreads it.
ALTER TABLE sends ADD COLUMN broadcast text,
                  ADD COLUMN broadcast_run bigint,
                  ADD COLUMN variant smallint,
                  ADD COLUMN ab_test boolean,
                  ADD COLUMN planned_at timestamptz;
CREATE UNIQUE INDEX sends_broadcast_once ON sends (contact_id, broadcast_run) WHERE broadcast_run IS NOT NULL;
CREATE INDEX sends_broadcast_run ON sends (broadcast_run, status) WHERE broadcast_run IS NOT NULL;
