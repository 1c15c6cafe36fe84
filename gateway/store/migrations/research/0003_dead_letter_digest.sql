-- 0003 dead letters stored once (see the care migration 0007): digest is the SHA-256 of
-- the refused message (topic and payload), unique. A digest of a payload that may hold an
-- identifier reveals nothing without the whole payload (samples included) to compare.

ALTER TABLE pseudo.dead_letters
    ADD COLUMN digest bytea CHECK (digest IS NULL OR length(digest) = 32);
CREATE UNIQUE INDEX dead_letters_once ON pseudo.dead_letters (digest);
COMMENT ON COLUMN pseudo.dead_letters.digest IS
    'SHA-256 of topic and payload: a redelivered message is stored once';
