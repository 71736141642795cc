-- Webhooks out (issue 20): the endpoints the journey declares, and the
-- outbox of what to tell them. An outbox row is written in the
-- transaction of the change it reports (a stage move, a send's end, an
-- unsubscription, an offer), so a change is never reported without having
-- happened nor lost by a crash after it; a deliverer posts it, signed,
-- retrying with back-off for about a day. 'msg_' || id is its webhook-id,
-- the same on every attempt (receivers de-duplicate by it).
CREATE TABLE webhook_endpoints (
    name          text        PRIMARY KEY,
    url           text        NOT NULL,
    events        text[]      NOT NULL,
    secret_env    text        NOT NULL,
    -- Failing since the first failure after the last success; an endpoint
    -- failing for a day is disabled (shown, enabled again by hand or by
    -- an apply that changes it).
    failing_since timestamptz,
    disabled_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_outbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint      text        NOT NULL,
    type          text        NOT NULL,
    body          jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'failed')),
    due_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0,
    claimed_by    text,
    claimed_until timestamptz,
    last_status   integer,
    last_error    text,
    latency_ms    double precision,
    delivered_at  timestamptz
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (due_at) WHERE status = 'pending';
CREATE INDEX webhook_outbox_endpoint ON webhook_outbox (endpoint, id DESC);
