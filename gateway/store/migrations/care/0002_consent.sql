-- 0002 consent: versioned consent records shaped like FHIR Consent provisions, and an
-- append-only event log (grant, withdraw, ...). A change to a consent is a new record
-- version, never an edit in place; the decision function reads the versions.

CREATE SCHEMA consent;
REVOKE ALL ON SCHEMA consent FROM PUBLIC;

CREATE TABLE consent.records (
    id                 uuid NOT NULL DEFAULT gen_random_uuid(),
    version            integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    subject_id         uuid NOT NULL REFERENCES identity.subjects (id),
    scope              text NOT NULL CHECK (scope IN (
                           'core.service', 'clinical.care', 'research.internal',
                           'stats.release', 'product.improvement', 'location', 'xborder')),
    status             text NOT NULL CHECK (status IN (
                           'draft', 'proposed', 'active', 'rejected', 'inactive',
                           'entered-in-error')),
    period_start       timestamptz NOT NULL,
    period_end         timestamptz CHECK (period_end IS NULL OR period_end >= period_start),
    actor              text,
    purpose            text NOT NULL,
    policy_version     text NOT NULL,
    policy_text_sha256 bytea NOT NULL CHECK (octet_length(policy_text_sha256) = 32),
    collection_method  text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version)
);
COMMENT ON COLUMN consent.records.actor IS
    'who may use the data under this provision (care team or organisation); NULL = any';
COMMENT ON COLUMN consent.records.collection_method IS
    'how the consent was collected (portal, cli, paper, ...): the evidence of the grant';
CREATE INDEX records_subject_scope ON consent.records (subject_id, scope, recorded_at);

CREATE TABLE consent.events (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    subject_id   uuid NOT NULL REFERENCES identity.subjects (id),
    record_id    uuid NOT NULL,
    record_version integer NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('grant', 'withdraw', 'expire', 'correct')),
    actor_role   text NOT NULL,
    FOREIGN KEY (record_id, record_version) REFERENCES consent.records (id, version)
);
CREATE INDEX events_subject_at ON consent.events (subject_id, at);

-- Append-only guard shared with audit.log (0003): any UPDATE, DELETE or TRUNCATE raises
-- SQLSTATE BGAUD, whatever the role's privileges (defence in depth behind the REVOKEs).
CREATE FUNCTION public.biogw_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'BGAUD';
END
$$;
REVOKE ALL ON FUNCTION public.biogw_reject_change() FROM PUBLIC;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON consent.events
    FOR EACH ROW EXECUTE FUNCTION public.biogw_reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON consent.events
    FOR EACH STATEMENT EXECUTE FUNCTION public.biogw_reject_change();
