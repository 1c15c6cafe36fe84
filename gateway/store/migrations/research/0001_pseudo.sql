-- 0001 pseudo: the research database. Pseudonymized signal data and generalized
-- demographics only: no subject id, device key, MAC, serial, name or birth date exists
-- here, and no role of the care database has any privilege here (nor CONNECT).
--
-- Layout mirrors the care database's clinical schema (see care/0005_clinical.sql): frames,
-- gaps and vitals are range-partitioned by UTC day on ts, with no default partition;
-- partitions come from pseudo.ensure_partitions() and retention drops them whole. Times
-- are the shifted times the router publishes (whole-week shift per subject).
--
-- Uniqueness: (pseudonym, stream, time_ns, sequence) -- a redelivered message repeats it
-- exactly; the time keeps a garment's restarted sequence numbers apart. Without a device
-- key two devices of one pseudonym streaming the same kind could only collide with equal
-- first-sample times to the nanosecond and equal sequence numbers.

CREATE SCHEMA pseudo;
REVOKE ALL ON SCHEMA pseudo FROM PUBLIC;
CREATE SCHEMA release;
REVOKE ALL ON SCHEMA release FROM PUBLIC;
COMMENT ON SCHEMA release IS 'reserved for released aggregates (k-anonymous, with manifests)';

CREATE TABLE pseudo.frames (
    pseudonym   text NOT NULL CHECK (length(pseudonym) BETWEEN 1 AND 128),
    stream      text NOT NULL,
    time_ns     bigint NOT NULL CHECK (time_ns >= 0),
    ts          timestamptz NOT NULL,
    fs_hz       double precision CHECK (fs_hz > 0),
    offsets_ns  bigint[],
    sequence    bigint,
    n_samples   integer NOT NULL CHECK (n_samples >= 0),
    channels    text[] NOT NULL DEFAULT '{}',
    unit        text NOT NULL,
    quality     integer NOT NULL DEFAULT 0,
    samples     bytea NOT NULL,
    CHECK (ts = timestamptz 'epoch' + (time_ns / 1000) * interval '1 microsecond'),
    CHECK ((fs_hz IS NULL) <> (offsets_ns IS NULL)),
    CHECK (offsets_ns IS NULL OR cardinality(offsets_ns) = n_samples),
    CHECK (length(samples) % 8 = 0),
    CONSTRAINT frames_once UNIQUE NULLS NOT DISTINCT (pseudonym, stream, time_ns, sequence, ts)
) PARTITION BY RANGE (ts);
COMMENT ON COLUMN pseudo.frames.time_ns IS 'shifted UTC ns since the epoch of the first sample';
COMMENT ON COLUMN pseudo.frames.samples IS
    'packed little-endian float64, row-major (n_samples x channels), exactly the wire bytes';
CREATE INDEX frames_ts_brin ON pseudo.frames USING brin (ts);
CREATE INDEX frames_pseudonym_stream ON pseudo.frames (pseudonym, stream, ts);

CREATE TABLE pseudo.gaps (
    pseudonym        text NOT NULL CHECK (length(pseudonym) BETWEEN 1 AND 128),
    stream           text NOT NULL,
    start_ns         bigint NOT NULL CHECK (start_ns >= 0),
    end_ns           bigint NOT NULL,
    ts               timestamptz NOT NULL,
    samples_missing  bigint NOT NULL CHECK (samples_missing >= 0),
    cause            text NOT NULL,
    CHECK (end_ns >= start_ns),
    CHECK (ts = timestamptz 'epoch' + (start_ns / 1000) * interval '1 microsecond'),
    CONSTRAINT gaps_once UNIQUE (pseudonym, stream, start_ns, end_ns, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX gaps_ts_brin ON pseudo.gaps USING brin (ts);

CREATE TABLE pseudo.vitals (
    pseudonym   text NOT NULL CHECK (length(pseudonym) BETWEEN 1 AND 128),
    ts          timestamptz NOT NULL,
    kind        text NOT NULL,
    value       double precision NOT NULL,
    window_s    double precision NOT NULL CHECK (window_s > 0),
    quality     integer NOT NULL DEFAULT 0,
    CONSTRAINT vitals_once UNIQUE (pseudonym, kind, window_s, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX vitals_ts_brin ON pseudo.vitals USING brin (ts);

-- Generalized fields only (bands and coarse regions), never exact values.
CREATE TABLE pseudo.demographics (
    pseudonym  text PRIMARY KEY CHECK (length(pseudonym) BETWEEN 1 AND 128),
    age_band   text CHECK (age_band IS NULL OR age_band ~ '^[0-9]{1,3}(-[0-9]{1,3}|\+)$'),
    sex        text CHECK (sex IS NULL OR sex IN ('female', 'male', 'other', 'unknown')),
    region     text CHECK (region IS NULL OR length(region) BETWEEN 1 AND 64)
);
COMMENT ON COLUMN pseudo.demographics.age_band IS 'e.g. 30-39 or 90+';

-- Payloads that failed validation on the research path; payload is NULL unless it is
-- known to carry no identifier.
CREATE TABLE pseudo.dead_letters (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic_class  text NOT NULL,
    reason       text NOT NULL,
    payload      bytea
);

-- Same contract as clinical.ensure_partitions: missing day partitions of `tables`
-- covering [start, stop), at most 62 days per call, names returned.
CREATE FUNCTION pseudo.ensure_partitions(
    start timestamptz,
    stop timestamptz,
    tables text[] DEFAULT ARRAY['frames', 'gaps', 'vitals']
)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    day date;
    last date;
    tbl text;
    part text;
BEGIN
    IF start IS NULL OR stop IS NULL OR stop <= start THEN
        RETURN;
    END IF;
    day := (start AT TIME ZONE 'UTC')::date;
    last := ((stop - interval '1 microsecond') AT TIME ZONE 'UTC')::date;
    IF last - day >= 62 THEN
        RAISE EXCEPTION 'ensure_partitions: % days requested, at most 62 per call',
            last - day + 1 USING ERRCODE = '22023';
    END IF;
    IF tables IS NULL OR NOT tables <@ ARRAY['frames', 'gaps', 'vitals'] THEN
        RAISE EXCEPTION 'ensure_partitions: tables must be among frames, gaps, vitals'
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pseudo.ensure_partitions'));
    WHILE day <= last LOOP
        FOREACH tbl IN ARRAY tables LOOP
            part := tbl || '_p' || to_char(day, 'YYYYMMDD');
            IF to_regclass(format('pseudo.%I', part)) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE pseudo.%I PARTITION OF pseudo.%I'
                    ' FOR VALUES FROM (%L) TO (%L)',
                    part, tbl, day::timestamp AT TIME ZONE 'UTC',
                    (day + 1)::timestamp AT TIME ZONE 'UTC');
                RETURN NEXT part;
            END IF;
        END LOOP;
        day := day + 1;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pseudo.ensure_partitions(timestamptz, timestamptz, text[]) FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'research_ingest') THEN
        BEGIN
            CREATE ROLE research_ingest NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another database's migration
        END;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'research_ingest_login'
    ) THEN
        BEGIN
            CREATE ROLE research_ingest_login LOGIN INHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT pg_catalog.pg_has_role('research_ingest_login', 'research_ingest', 'MEMBER') THEN
        BEGIN
            GRANT research_ingest TO research_ingest_login;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    -- Only the research roles may connect to this database.
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO research_ingest',
        current_database());
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA pseudo, release, biogw_meta FROM research_ingest;
GRANT USAGE ON SCHEMA pseudo TO research_ingest;
GRANT INSERT ON pseudo.frames, pseudo.gaps, pseudo.vitals, pseudo.demographics,
    pseudo.dead_letters TO research_ingest;
GRANT EXECUTE ON FUNCTION pseudo.ensure_partitions(timestamptz, timestamptz, text[])
    TO research_ingest;
