-- Contacts, their identities, and what they do.
--
-- Every per-contact table carries contact_id and is read per contact or per
-- batch of contacts, so the schema can be distributed by contact_id.

CREATE SEQUENCE contact_id_seq;

CREATE TABLE contacts (
    id               bigint      PRIMARY KEY,
    user_id          text,
    anonymous_id     text,
    email            text,
    traits           jsonb       NOT NULL DEFAULT '{}',
    status           text        NOT NULL DEFAULT 'subscribed'
                     CHECK (status IN ('subscribed', 'unsubscribed')),
    stage            text        NOT NULL DEFAULT 'awareness'
                     CHECK (stage IN ('awareness', 'consideration', 'decision', 'retention', 'advocacy')),
    stage_entered_at timestamptz NOT NULL DEFAULT now(),
    merged_into      bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX contacts_email ON contacts (email) WHERE email IS NOT NULL;
CREATE INDEX contacts_stage ON contacts (stage) WHERE merged_into IS NULL;

-- identities maps an external id ('u:' || userId, 'a:' || anonymousId) to a
-- contact. A userId mapping never changes once written; an anonymousId
-- mapping moves when its anonymous contact is merged into an identified one.
CREATE TABLE identities (
    identity   text   PRIMARY KEY,
    contact_id bigint NOT NULL
);

CREATE INDEX identities_contact ON identities (contact_id);

-- events is the activity log. (contact_id, message_id) de-duplicates client
-- retries; (contact_id, name, occurred_at) serves the rule language's
-- per-contact aggregates for a batch of contacts.
CREATE TABLE events (
    contact_id  bigint      NOT NULL,
    message_id  text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('track', 'page', 'identify', 'screen', 'group', 'alias', 'internal')),
    name        text        NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}',
    context     jsonb,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, message_id)
);

CREATE INDEX events_contact_name_time ON events (contact_id, name, occurred_at);
