-- What attribution (issue 21) looks up, by index.
--
-- The contacts merged into a contact: attribution credits a person's
-- conversion to an email sent to an anonymous contact later merged into
-- them (the email's opens and clicks moved with the merge, the send
-- stayed), and credits each goal event once though a merge stores it
-- again under the identified contact. Merged contacts are few; the index
-- holds only them.
CREATE INDEX contacts_merged_into ON contacts (merged_into) WHERE merged_into IS NOT NULL;

-- A conversion's message id is its goal event's, compared byte by byte
-- as events' is (migration 008), so that looking one up by an event's
-- (contact_id, message_id) uses conversions' primary key.
ALTER TABLE conversions ALTER COLUMN message_id TYPE text COLLATE "C";
