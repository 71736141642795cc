-- When a send's holds began: a held send waits in 10-minute steps (each
-- moves due_at), and expires after sending: hold_expiry counted from here.
-- NULL when the send is not held.
ALTER TABLE sends ADD COLUMN held_since timestamptz;
