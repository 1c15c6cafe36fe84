-- 0006 clinical read: the read side of the clinical schema (gateway/store/signals.py).
--
-- Indexes for the readers: gaps by (subject_id, stream, ts) so a signal read finds the
-- stored gaps of one subject's stream with an index range scan, and vitals by
-- (subject_id, kind, ts) for the latest value per subject and kind (skip scan over the
-- pairs, then a backward scan; vitals_once leads with window_s after kind, so it cannot
-- give ts order). Indexes on a partitioned parent are created on every partition,
-- present and future.
--
-- Grants: on the partitioned parents. A read through the parent is checked against the
-- parent's privileges only, so partitions created later (clinical.ensure_partitions)
-- need no grant of their own; reading a partition directly stays refused.
--
-- vitals_1m: one-minute aggregates of the vitals under one name on every backend. Here
-- it is a plain view computed on the fly (date_bin on the epoch = time_bucket's
-- buckets); gateway/store/timescale.py drops it and creates a continuous aggregate of
-- the same name and columns when TimescaleDB is used, re-applying its grants.

CREATE INDEX gaps_subject_stream ON clinical.gaps (subject_id, stream, ts);
CREATE INDEX vitals_subject_kind ON clinical.vitals (subject_id, kind, ts);

CREATE VIEW clinical.vitals_1m AS
SELECT date_bin(interval '1 minute', ts, timestamptz 'epoch') AS bucket,
       subject_id,
       kind,
       avg(value) AS value_avg,
       min(value) AS value_min,
       max(value) AS value_max,
       count(*) AS n
FROM clinical.vitals
GROUP BY 1, 2, 3;
COMMENT ON VIEW clinical.vitals_1m IS
    'vitals per subject, kind and UTC minute (a continuous aggregate under TimescaleDB)';
REVOKE ALL ON clinical.vitals_1m FROM PUBLIC;

-- clinician API: the signals, vitals and alerts of the people in care. Which subjects a
-- clinician may see and the audit record of every read are the API's job.
GRANT USAGE ON SCHEMA clinical TO biogw_clinician_api;
GRANT SELECT ON clinical.frames, clinical.gaps, clinical.vitals, clinical.alerts,
    clinical.vitals_1m TO biogw_clinician_api;

-- owner API: the wearer's own data (view and export). The grant covers every subject's
-- rows: filtering to the authenticated wearer's subject_id is the API's job.
GRANT USAGE ON SCHEMA clinical TO biogw_owner_api;
GRANT SELECT ON clinical.frames, clinical.gaps, clinical.vitals, clinical.alerts,
    clinical.vitals_1m TO biogw_owner_api;

-- privacy officer: reviews what the ingester refused (topic class and reason; payloads
-- may hold health data and are read only for the review).
GRANT USAGE ON SCHEMA clinical TO biogw_privacy_officer;
GRANT SELECT ON clinical.dead_letters TO biogw_privacy_officer;

-- The gateway role gets nothing here: it publishes, the ingester stores.

-- Ingest: frame samples (packed float64, incompressible) are stored out of line without
-- the pglz attempt (measured: raw COPY of 8 KB frames 3.8 -> 25.9 M samples/s); set on
-- the parent, existing and future partitions follow. The ingester's duplicate path
-- stages rows in a temporary table: grant TEMPORARY explicitly rather than rely on
-- PUBLIC's default, which a hardened database revokes.
ALTER TABLE clinical.frames ALTER COLUMN samples SET STORAGE EXTERNAL;
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO clinical_ingest', current_database());
END
$$;
