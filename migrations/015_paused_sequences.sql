-- Sequences paused by hand (waymark sequences pause NAME): a paused
-- sequence enrols nobody, and its queued sends wait — their due time kept
-- in sends.paused_due_at — until it is resumed. Nothing is dropped.
CREATE TABLE paused_sequences (
    name      text        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE sends ADD COLUMN paused_due_at timestamptz;
