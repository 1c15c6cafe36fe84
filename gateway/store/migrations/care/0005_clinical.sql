-- 0005 clinical: identified signal data as the ingester stores it.
--
-- frames, gaps and vitals are range-partitioned by day on ts (UTC) with no default
-- partition: a row for a day whose partition does not exist is refused (SQLSTATE 23514),
-- never parked somewhere retention cannot reach. Partitions are created ahead through
-- clinical.ensure_partitions() (SECURITY DEFINER, owned by the migration owner) and
-- dropped whole by the retention job (gateway/store/partitions.py).
--
-- ts is the first sample's time at microsecond resolution. It is an ordinary column
-- (PostgreSQL cannot partition on a generated column), filled by the ingester and held
-- equal to time_ns truncated to microseconds by a CHECK.
--
-- Uniqueness (idempotent ingest): a redelivered message carries the very same frame, so
-- (device_key, stream, time_ns, sequence) repeats exactly. sequence alone is not enough:
-- a garment keeps its counter across reconnects but restarts it when it reboots, so the
-- same sequence number comes back later with a different first-sample time. device_key
-- (not subject_id) keeps two devices of one wearer streaming the same kind apart.
-- sequence is NULL for streams without one; NULLS NOT DISTINCT makes those duplicates
-- too. ts is in every key because a partitioned table's unique keys must hold it (it is
-- a function of time_ns, so it does not weaken the key).

CREATE SCHEMA clinical;
REVOKE ALL ON SCHEMA clinical FROM PUBLIC;

CREATE TABLE clinical.frames (
    subject_id  uuid NOT NULL,
    device_key  uuid NOT NULL,
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
    CONSTRAINT frames_once UNIQUE NULLS NOT DISTINCT (device_key, stream, time_ns, sequence, ts)
) PARTITION BY RANGE (ts);
COMMENT ON COLUMN clinical.frames.time_ns IS 'UTC ns since the epoch of the first sample';
COMMENT ON COLUMN clinical.frames.samples IS
    'packed little-endian float64, row-major (n_samples x channels), exactly the wire bytes';
CREATE INDEX frames_ts_brin ON clinical.frames USING brin (ts);
CREATE INDEX frames_subject_stream ON clinical.frames (subject_id, stream, ts);

CREATE TABLE clinical.gaps (
    subject_id       uuid NOT NULL,
    device_key       uuid NOT NULL,
    stream           text NOT NULL,
    start_ns         bigint NOT NULL CHECK (start_ns >= 0),
    end_ns           bigint NOT NULL,
    ts               timestamptz NOT NULL,
    samples_missing  bigint NOT NULL CHECK (samples_missing >= 0),
    cause            text NOT NULL,
    CHECK (end_ns >= start_ns),
    CHECK (ts = timestamptz 'epoch' + (start_ns / 1000) * interval '1 microsecond'),
    CONSTRAINT gaps_once UNIQUE (device_key, stream, start_ns, end_ns, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX gaps_ts_brin ON clinical.gaps USING brin (ts);

CREATE TABLE clinical.vitals (
    subject_id  uuid NOT NULL,
    ts          timestamptz NOT NULL,
    kind        text NOT NULL,
    value       double precision NOT NULL,
    window_s    double precision NOT NULL CHECK (window_s > 0),
    quality     integer NOT NULL DEFAULT 0,
    CONSTRAINT vitals_once UNIQUE (subject_id, kind, window_s, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX vitals_ts_brin ON clinical.vitals USING brin (ts);

CREATE TABLE clinical.alerts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subject_id  uuid NOT NULL,
    ts          timestamptz NOT NULL,
    kind        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alerts_subject_ts ON clinical.alerts (subject_id, ts);

CREATE TABLE clinical.dead_letters (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic_class  text NOT NULL,
    reason       text NOT NULL,
    payload      bytea NOT NULL
);
COMMENT ON COLUMN clinical.dead_letters.topic_class IS
    'kind of topic (frames, gaps, ...), never the topic itself: topics hold subject ids';

-- Creates the missing day partitions of `tables` (default: frames, gaps and vitals)
-- covering [start, stop) (whole UTC days) and returns their names. At most 62 days per call, so a caller with
-- EXECUTE cannot flood the catalog. Serialised by an advisory lock: concurrent ingesters
-- create each partition once.
CREATE FUNCTION clinical.ensure_partitions(
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
    PERFORM pg_advisory_xact_lock(hashtext('clinical.ensure_partitions'));
    WHILE day <= last LOOP
        FOREACH tbl IN ARRAY tables LOOP
            part := tbl || '_p' || to_char(day, 'YYYYMMDD');
            IF to_regclass(format('clinical.%I', part)) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE clinical.%I PARTITION OF clinical.%I'
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
REVOKE ALL ON FUNCTION clinical.ensure_partitions(timestamptz, timestamptz, text[]) FROM PUBLIC;

-- The ingest role: INSERT only. ON CONFLICT DO NOTHING needs no more than INSERT.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'clinical_ingest') THEN
        BEGIN
            CREATE ROLE clinical_ingest NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another database's migration
        END;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'clinical_ingest_login'
    ) THEN
        BEGIN
            CREATE ROLE clinical_ingest_login LOGIN INHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT pg_catalog.pg_has_role('clinical_ingest_login', 'clinical_ingest', 'MEMBER') THEN
        BEGIN
            GRANT clinical_ingest TO clinical_ingest_login;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA identity, consent, audit, biogw_meta, clinical
    FROM clinical_ingest;
GRANT USAGE ON SCHEMA clinical TO clinical_ingest;
GRANT INSERT ON clinical.frames, clinical.gaps, clinical.vitals, clinical.alerts,
    clinical.dead_letters TO clinical_ingest;
GRANT EXECUTE ON FUNCTION clinical.ensure_partitions(timestamptz, timestamptz, text[])
    TO clinical_ingest;
