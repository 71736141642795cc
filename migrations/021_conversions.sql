-- Conversions (issue 21): the goal event that means marketing worked
-- (`conversion:` in the journey file; by default order_completed, valued
-- by its revenue property, credited within 5 days), and each goal event
-- with the email it was credited to.

-- The goal (one row). An apply that changes the event or the value
-- forgets attribution_state's snapshot, so that the next pass attributes
-- the new goal's events already stored; conversions already credited
-- stay as they were.
CREATE TABLE conversion_goal (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    event      text        NOT NULL,
    value      text        NOT NULL DEFAULT '',
    "window"   interval    NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO conversion_goal (event, value, "window") VALUES ('order_completed', 'revenue', interval '5 days');

-- Every goal event, once: (contact_id, message_id) is the event's key, so
-- a conversion is credited once however often attribution runs. send_id
-- is the email credited (the one the contact last opened or clicked as a
-- person within the window before the event), NULL when there was none;
-- reason says why, in words. stage is the contact's stage when the event
-- happened.
CREATE TABLE conversions (
    contact_id    bigint      NOT NULL,
    message_id    text        NOT NULL,
    event         text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    value         numeric     NOT NULL DEFAULT 0,
    stage         text        NOT NULL,
    send_id       bigint,
    touch         text        CHECK (touch IN ('opened', 'clicked')),
    touch_at      timestamptz,
    reason        text        NOT NULL,
    attributed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, message_id)
);
CREATE INDEX conversions_at ON conversions (occurred_at);
CREATE INDEX conversions_send ON conversions (send_id) WHERE send_id IS NOT NULL;

-- Attribution runs over the events committed since its last pass, as the
-- activity rollup's fold does (the snapshot of the last pass; '' before
-- the first, which takes every goal event stored).
CREATE TABLE attribution_state (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    snapshot    text        NOT NULL DEFAULT '',
    attributed_at timestamptz
);
INSERT INTO attribution_state DEFAULT VALUES;
