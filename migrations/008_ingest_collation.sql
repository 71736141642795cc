-- Identities and message ids are opaque keys, compared byte by byte: the
-- "C" collation makes every comparison in their indexes (an identity
-- lookup and a primary-key insert for each event ingested) a memcmp
-- instead of a locale-aware comparison of NUL-terminated copies. Equality,
-- the only thing these keys are used for, is unchanged.
ALTER TABLE identities ALTER COLUMN identity TYPE text COLLATE "C";
ALTER TABLE events ALTER COLUMN message_id TYPE text COLLATE "C";
