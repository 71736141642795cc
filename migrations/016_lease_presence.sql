-- A sender that holds its presence (a session advisory lock on a
-- connection of its own, for as long as its process lives) says so here:
-- once no session holds that lock, the sender is gone — killed, or its
-- machine down — and other senders release its claims at once instead of
-- waiting for its lease to expire.
ALTER TABLE leases ADD COLUMN presence boolean NOT NULL DEFAULT false;
