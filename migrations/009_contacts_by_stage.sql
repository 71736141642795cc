-- Contacts of a stage listed in id or sign-up order (the dashboard's stage
-- filter, the API's ?stage= with its sorts) read only that stage's rows.
CREATE INDEX contacts_stage_id ON contacts (stage, id) WHERE merged_into IS NULL;
CREATE INDEX contacts_stage_created ON contacts (stage, created_at, id) WHERE merged_into IS NULL;
DROP INDEX contacts_stage;
