-- The contacts merged into a contact, found by index: a contact's
-- conversions are credited to emails that may have been sent to a contact
-- merged into it since (its journey page reads them for each conversion;
-- attribution, for an open of such an email), and erasure erases the
-- contacts merged into the one erased. Without it each lookup read every
-- contact, and the journey page of any contact with a conversion took
-- 300-400 ms at a million contacts (waymark-bench dashboard).
CREATE INDEX contacts_merged_into ON contacts (merged_into) WHERE merged_into IS NOT NULL;
