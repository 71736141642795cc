-- What the relays (Amazon SES, Postmark, SendGrid, Mailgun, or anything
-- posting Waymark's own shape) report about the emails Waymark sent:
-- bounces, complaints and deliveries (issue 20). (provider, report_id)
-- makes a report delivered twice count once. contact_id and send_id are
-- the send its Message-ID names, when it names one of this installation's
-- sends; otherwise contact_id is NULL (the report is tied to the address).
CREATE TABLE delivery_reports (
    provider    text        NOT NULL,
    report_id   text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('bounce', 'complaint', 'delivery')),
    bounce_type text        CHECK (bounce_type IN ('hard', 'soft')),
    email       text        NOT NULL,
    message_id  text,
    contact_id  bigint,
    send_id     bigint,
    detail      text,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, report_id)
);
-- Soft bounces are counted per address over a window.
CREATE INDEX delivery_reports_soft ON delivery_reports (email, occurred_at)
    WHERE kind = 'bounce' AND bounce_type = 'soft';

-- One-time values a signed webhook carries (Mailgun's token), kept until
-- the request could no longer be fresh, so a replay is refused.
CREATE TABLE webhook_nonces (
    provider   text        NOT NULL,
    nonce      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (provider, nonce)
);

-- Too many soft bounces in a window suppress an address too.
ALTER TABLE suppressions DROP CONSTRAINT suppressions_reason_check;
ALTER TABLE suppressions ADD CONSTRAINT suppressions_reason_check
    CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual', 'erased', 'soft_bounce'));
