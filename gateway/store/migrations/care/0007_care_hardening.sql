-- 0007 care hardening: dead letters stored once, and only the care roles may connect.
--
-- Dead letters: a message the ingester refused is redelivered by the broker if its batch
-- committed but the acknowledgement was lost (a crash, a dropped connection); digest is
-- the SHA-256 of the message (topic and payload) and unique, so it is stored once (the
-- ingester inserts ON CONFLICT DO NOTHING). NULL for rows without one (not deduplicated).
--
-- CONNECT: PostgreSQL grants CONNECT and TEMPORARY on every new database to PUBLIC, so a
-- research role on the same server could connect here and read the catalog. Only the
-- care roles may connect (the research migration does the same on its side, 0001).
-- TEMPORARY stays with clinical_ingest alone (0006: its duplicate path stages rows).

ALTER TABLE clinical.dead_letters
    ADD COLUMN digest bytea CHECK (digest IS NULL OR length(digest) = 32);
CREATE UNIQUE INDEX dead_letters_once ON clinical.dead_letters (digest);
COMMENT ON COLUMN clinical.dead_letters.digest IS
    'SHA-256 of topic and payload: a redelivered message is stored once';

DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format(
        'GRANT CONNECT ON DATABASE %I TO biogw_gateway, biogw_owner_api,'
        ' biogw_clinician_api, biogw_privacy_officer, clinical_ingest',
        current_database());
END
$$;
