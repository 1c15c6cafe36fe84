-- 0002 release read: the research API role and the read side of the pseudo schema.
--
-- research_api (NOLOGIN group) and research_api_login (LOGIN, member) are created the
-- guarded way of 0001 (roles are cluster-global; several databases may migrate at once).
-- research_api may connect to this database and read the release schema only: released
-- aggregates, never pseudo rows about one person. Tables created later in release by the
-- migration owner are readable through the default privileges below.
--
-- Indexes and vitals_1m mirror care/0006 (see there): gaps by (pseudonym, stream, ts),
-- vitals by (pseudonym, kind, ts), and pseudo.vitals_1m, a plain view here and a
-- continuous aggregate under TimescaleDB (gateway/store/timescale.py). No grant on them.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'research_api') THEN
        BEGIN
            CREATE ROLE research_api NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another database's migration
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'research_api_login') THEN
        BEGIN
            CREATE ROLE research_api_login LOGIN INHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT pg_catalog.pg_has_role('research_api_login', 'research_api', 'MEMBER') THEN
        BEGIN
            GRANT research_api TO research_api_login;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO research_api', current_database());
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA pseudo, release, biogw_meta FROM research_api;
GRANT USAGE ON SCHEMA release TO research_api;
GRANT SELECT ON ALL TABLES IN SCHEMA release TO research_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA release GRANT SELECT ON TABLES TO research_api;

CREATE INDEX gaps_pseudonym_stream ON pseudo.gaps (pseudonym, stream, ts);
CREATE INDEX vitals_pseudonym_kind ON pseudo.vitals (pseudonym, kind, ts);

CREATE VIEW pseudo.vitals_1m AS
SELECT date_bin(interval '1 minute', ts, timestamptz 'epoch') AS bucket,
       pseudonym,
       kind,
       avg(value) AS value_avg,
       min(value) AS value_min,
       max(value) AS value_max,
       count(*) AS n
FROM pseudo.vitals
GROUP BY 1, 2, 3;
COMMENT ON VIEW pseudo.vitals_1m IS
    'vitals per pseudonym, kind and (shifted) UTC minute (a continuous aggregate under TimescaleDB)';
REVOKE ALL ON pseudo.vitals_1m FROM PUBLIC;

-- Ingest: frame samples stored out of line without the pglz attempt (see the care
-- migration 0006). research_ingest already holds TEMPORARY (0001).
ALTER TABLE pseudo.frames ALTER COLUMN samples SET STORAGE EXTERNAL;
