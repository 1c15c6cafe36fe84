-- 0008 alerts as the ingester's vitals stage writes them.
--
-- An alert is identified by (subject, kind, onset): the processors find the same event
-- again when a batch is redelivered or the ingester restarts, and it must be stored
-- once (the ingester inserts with ON CONFLICT DO NOTHING and publishes only what it
-- stored). end_ts is set when the event was reported already finished (an apnoea is
-- known once breathing resumes), else NULL.

ALTER TABLE clinical.alerts ADD COLUMN end_ts timestamptz;
ALTER TABLE clinical.alerts ADD CONSTRAINT alerts_end_after_start
    CHECK (end_ts IS NULL OR end_ts >= ts);
ALTER TABLE clinical.alerts ADD CONSTRAINT alerts_once UNIQUE (subject_id, kind, ts);
-- alerts_once leads with (subject_id, kind): the (subject_id, ts) index still serves a
-- subject's recent alerts across kinds.
