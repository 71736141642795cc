-- Webhooks out in batches (issue 20): a statement that moves a thousand
-- contacts writes, for each endpoint that wants stage_changed, one row
-- holding the thousand deliveries' bodies, in the move's transaction
-- (still never lost, never reported without the move). The deliverer
-- expands a batch into webhook_outbox rows (one delivery each, with its
-- own id, retries and log) in one transaction, before it claims: a
-- million moves in one sweep cost the sweep a thousand rows, not a
-- million.
CREATE TABLE webhook_batches (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint   text        NOT NULL,
    type       text        NOT NULL,
    bodies     jsonb       NOT NULL, -- an array of delivery bodies, in order
    due_at     timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
