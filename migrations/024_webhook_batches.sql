-- Webhooks out in batches (issue 20): a statement that moves a thousand
-- contacts writes, for each endpoint that wants stage_changed, one row
-- naming the thousand moves (their transitions' keys), in the move's
-- transaction (never lost, never reported without the move). The
-- deliverer expands a batch into webhook_outbox rows (one delivery each,
-- with its body, its own id, retries and log) in one transaction, before
-- it claims: a million moves in one sweep cost the sweep a thousand small
-- rows, not a million rows with their bodies and index entries.
CREATE TABLE webhook_batches (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint    text        NOT NULL,
    type        text        NOT NULL CHECK (type = 'stage_changed'),
    contact_ids bigint[]    NOT NULL, -- with seqs: the transitions moved, in order
    seqs        bigint[]    NOT NULL,
    due_at      timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
