-- The activity rollup the lifecycle sweep reads instead of the events
-- table: per contact, one compact binary record per event (see
-- internal/store/lifecycle_rollup.go for the layout).
--
-- New events are folded in incrementally at sweep time: every event row
-- carries the id of the transaction that stored it, and the rollup
-- remembers the snapshot it was last folded at, so a fold takes exactly the
-- events committed since (an event of a transaction still running then is
-- taken by the next fold). Rows stored before this migration have no id;
-- the first fold builds the rollup from all events.

ALTER TABLE events ADD COLUMN ingest_xid bigint;
ALTER TABLE events ALTER COLUMN ingest_xid SET DEFAULT (pg_current_xact_id()::text::bigint);
-- Events are appended in roughly transaction order, so a BRIN index finds
-- the recent ones cheaply and costs ingestion next to nothing.
CREATE INDEX events_ingest_xid ON events USING brin (ingest_xid);

-- Event names as small numbers in the rollup's records.
CREATE TABLE activity_names (
    id   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text    NOT NULL UNIQUE
);

CREATE TABLE activity (
    contact_id bigint PRIMARY KEY,
    data       bytea  NOT NULL
);
-- The records do not compress; do not try.
ALTER TABLE activity ALTER COLUMN data SET STORAGE EXTERNAL;

-- The rollup's one state row: the properties its records carry (spec, a
-- JSON list; '' until the first build) and the snapshot of the last fold.
CREATE TABLE activity_state (
    id        boolean     PRIMARY KEY DEFAULT true CHECK (id),
    spec      text        NOT NULL DEFAULT '',
    snapshot  text        NOT NULL DEFAULT '',
    built_at  timestamptz,
    folded_at timestamptz
);
INSERT INTO activity_state DEFAULT VALUES;
