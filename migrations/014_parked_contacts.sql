-- Contacts an evaluation had to set aside (issue 23): their facts could not
-- be loaded, their stage moves or enrolments not recorded, or a rule could
-- not be evaluated on their data. The others go on; every sweep evaluates
-- a parked contact again and removes its row once that succeeds. The API
-- and the dashboard show the reason.
CREATE TABLE parked_contacts (
    contact_id bigint      PRIMARY KEY,
    reason     text        NOT NULL,
    since      timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
