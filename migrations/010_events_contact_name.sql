-- The per-contact aggregates (the rule language's facts, campaigns'
-- enrolment facts) read a contact's events of some names with
-- occurred_at bounded from above only (as of the evaluation: every event
-- but future ones) and apply windows row by row, so occurred_at in
-- events_contact_name_time's key narrowed nothing. Without it, a
-- contact's entries under one name are equal keys, which btree
-- deduplication stores once with a list of row ids: 28 MB instead of
-- 128 MB for 2M events of 100,000 contacts, and so far fewer index pages
-- to read, dirty and log for each event stored. The facts query reads the
-- same rows through it (2,000 contacts: 37 ms either way, measured).
CREATE INDEX events_contact_name ON events (contact_id, name);
DROP INDEX events_contact_name_time;
