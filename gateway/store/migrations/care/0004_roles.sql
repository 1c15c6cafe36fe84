-- 0004 roles: one NOLOGIN group role per use and one LOGIN role in each group.
--
-- Roles are cluster-global while grants are per database, so the CREATE ROLE statements
-- are guarded (safe when many databases on one server run this migration, even at once)
-- and the grants below apply to this database only. No passwords are set here: the
-- deployment sets them (ALTER ROLE ... PASSWORD) or uses peer/certificate auth.
-- deploy/roles/expected_privileges.csv is the matrix these grants must produce exactly.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY[
        'biogw_gateway', 'biogw_owner_api', 'biogw_clinician_api', 'biogw_privacy_officer'
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by another database's migration
            END;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = name || '_login') THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN INHERIT', name || '_login');
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
        IF NOT pg_catalog.pg_has_role(name || '_login', name, 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', name, name || '_login');
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- Start from nothing in this database, so re-running is exact.
REVOKE ALL ON ALL TABLES IN SCHEMA identity, consent, audit, biogw_meta
    FROM biogw_gateway, biogw_owner_api, biogw_clinician_api, biogw_privacy_officer;

-- gateway: resolves device keys to subjects, records pairing and bond state, reads consent.
GRANT USAGE ON SCHEMA identity, consent, audit TO biogw_gateway;
GRANT SELECT, INSERT, UPDATE ON identity.devices TO biogw_gateway;
GRANT SELECT ON consent.records, consent.events TO biogw_gateway;

-- owner API: the wearer's own identity, devices and consent (row filtering is the API's).
GRANT USAGE ON SCHEMA identity, consent, audit TO biogw_owner_api;
GRANT SELECT, INSERT, UPDATE ON identity.subjects TO biogw_owner_api;
GRANT SELECT, UPDATE ON identity.devices TO biogw_owner_api;
GRANT SELECT, INSERT ON consent.records, consent.events TO biogw_owner_api;

-- clinician API: reads the people in care and their consent; every read is audited.
GRANT USAGE ON SCHEMA identity, consent, audit TO biogw_clinician_api;
GRANT SELECT ON identity.subjects, identity.devices TO biogw_clinician_api;
GRANT SELECT ON consent.records, consent.events TO biogw_clinician_api;

-- privacy officer: reads and verifies the audit chain and the consent history.
GRANT USAGE ON SCHEMA consent, audit TO biogw_privacy_officer;
GRANT SELECT ON audit.log, audit.chain_head TO biogw_privacy_officer;
GRANT SELECT ON consent.records, consent.events TO biogw_privacy_officer;

-- Every application role appends audit records, through the chaining function only.
GRANT EXECUTE ON FUNCTION audit.append(text, text, text, jsonb)
    TO biogw_gateway, biogw_owner_api, biogw_clinician_api, biogw_privacy_officer;

-- No application role may change or remove audit rows (the triggers also refuse).
REVOKE UPDATE, DELETE, TRUNCATE ON audit.log, audit.chain_head, consent.events
    FROM biogw_gateway, biogw_owner_api, biogw_clinician_api, biogw_privacy_officer;
