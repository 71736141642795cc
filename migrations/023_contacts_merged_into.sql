-- The contacts merged into a contact (issue 21): attribution credits a
-- person's conversion to an email sent to an anonymous contact later
-- merged into them (the email's opens and clicks moved with the merge,
-- the send stayed), and credits each goal event once though a merge
-- stores it again under the identified contact. Merged contacts are few;
-- the index holds only them.
CREATE INDEX contacts_merged_into ON contacts (merged_into) WHERE merged_into IS NOT NULL;
