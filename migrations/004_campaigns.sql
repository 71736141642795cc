-- Sequences, enrolments, sends, holds, offers and suppressions.

-- The current definition of each sequence; every version ever applied is
-- kept, since enrolments continue on the version they entered.
CREATE TABLE sequences (
    name       text        PRIMARY KEY,
    version    integer     NOT NULL,
    position   integer     NOT NULL,
    definition jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sequence_versions (
    name       text        NOT NULL,
    version    integer     NOT NULL,
    definition jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE TABLE holds (
    name      text    PRIMARY KEY,
    position  integer NOT NULL,
    condition text    NOT NULL
);

CREATE TABLE offers (
    name       text        PRIMARY KEY,
    definition jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Coupon pools loaded by apply; a code is given at most once.
CREATE TABLE coupons (
    offer      text        NOT NULL,
    code       text        NOT NULL,
    contact_id bigint,
    given_at   timestamptz,
    PRIMARY KEY (offer, code)
);
CREATE INDEX coupons_free ON coupons (offer) WHERE contact_id IS NULL;

-- Journey-wide sending settings (one row).
CREATE TABLE settings (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    definition jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE enrolments (
    contact_id  bigint      NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    sequence    text        NOT NULL,
    version     integer     NOT NULL,
    status      text        NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'completed', 'converted', 'exited', 'cancelled')),
    reason      text,
    enrolled_at timestamptz NOT NULL,
    ended_at    timestamptz,
    next_step   integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (contact_id, id)
);
-- At most one active enrolment of a contact in a sequence.
CREATE UNIQUE INDEX enrolments_one_active ON enrolments (contact_id, sequence) WHERE status = 'active';
CREATE INDEX enrolments_active ON enrolments (sequence, id) WHERE status = 'active';
CREATE INDEX enrolments_contact_sequence ON enrolments (contact_id, sequence, enrolled_at);

-- Offer draws: who was eligible, and whether they were drawn (the ones not
-- drawn are the control group the surprise is measured against).
CREATE TABLE offer_draws (
    contact_id bigint      NOT NULL,
    offer      text        NOT NULL,
    drawn      boolean     NOT NULL,
    code       text,
    expires_at timestamptz,
    at         timestamptz NOT NULL,
    PRIMARY KEY (contact_id, offer, at)
);
-- A coupon code is given once.
CREATE UNIQUE INDEX offer_draws_code ON offer_draws (offer, code) WHERE code IS NOT NULL;

-- Every email Waymark sends or means to send. (enrolment, step) is unique:
-- a step is sent once per enrolment whatever retries, ticks or instances do.
CREATE TABLE sends (
    contact_id     bigint      NOT NULL,
    id             bigint      GENERATED ALWAYS AS IDENTITY,
    enrolment_id   bigint,
    sequence       text,
    step           integer     NOT NULL,
    offer          text,
    offer_code     text,
    offer_expires  timestamptz,
    template       text        NOT NULL,
    status         text        NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'unknown', 'suppressed', 'cancelled', 'skipped', 'expired')),
    due_at         timestamptz NOT NULL,
    -- Why a due send waits (hold, frequency cap, quiet hours, retry), and
    -- until when; NULL once sent.
    delayed_reason text,
    template_version integer,
    tone           text,
    tone_reason    text,
    recipient      text,
    message_id     text,
    smtp_response  text,
    attempts       integer     NOT NULL DEFAULT 0,
    claimed_by     text,
    claimed_at     timestamptz,
    sent_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, id)
);
CREATE UNIQUE INDEX sends_once ON sends (contact_id, enrolment_id, step) WHERE enrolment_id IS NOT NULL;
CREATE INDEX sends_due ON sends (due_at) WHERE status = 'queued';
CREATE INDEX sends_recent ON sends (contact_id, sent_at) WHERE status = 'sent';

-- Addresses never to be sent to, whatever a journey says.
CREATE TABLE suppressions (
    email      text        PRIMARY KEY,
    reason     text        NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual', 'erased')),
    detail     text,
    created_at timestamptz NOT NULL DEFAULT now()
);
