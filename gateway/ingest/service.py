"""The ingest process (``biogw ingest``, and the ingest half of ``biogw demo``).

Role: one ``PathIngester`` per configured path (clinical into the care database, research
into the research database), each with its vitals stage, the alert publisher (clinical),
the in-process retention job when asked for, and the
Prometheus endpoint, under one task group. Cancelling ``run_ingest`` stops it cleanly:
a batch being written is either committed or not, and nothing un-committed was
acknowledged.

Must not: parse configuration, log DSNs, topics, payloads or subject ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import psycopg

from gateway.backoff import BackoffPolicy
from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.ingest.alerts import AlertPublisher
from gateway.ingest.ingester import IngestCounters, PathIngester
from gateway.ingest.validate import IngestPath
from gateway.ingest.vitals import VitalsStage
from gateway.metrics import DataclassSource, FieldMetric, GatewayMetrics, Sample
from gateway.metrics_http import serve_metrics
from gateway.privacy.pseudonyms import MAX_SHIFT_WEEKS
from gateway.store import StoreError
from gateway.store.partitions import SignalSchema
from gateway.store.retention import apply_retention

__all__ = ["INGEST_METRICS", "IngestHandle", "run_ingest"]

logger = logging.getLogger(__name__)

INGEST_METRICS: Final = {
    "messages": FieldMetric.counter("biogw_ingest_messages_total", "MQTT messages received."),
    "batches": FieldMetric.counter("biogw_ingest_batches_total", "Batches committed."),
    "frames": FieldMetric.counter("biogw_ingest_frames_total", "Frames stored."),
    "samples": FieldMetric.counter("biogw_ingest_samples_total", "Samples stored."),
    "frame_duplicates": FieldMetric.counter(
        "biogw_ingest_duplicates_total",
        "Frames and gaps received again, not stored twice.",
        outcome="frame",
    ),
    "gap_duplicates": FieldMetric.counter(
        "biogw_ingest_duplicates_total",
        "Frames and gaps received again, not stored twice.",
        outcome="gap",
    ),
    "gaps": FieldMetric.counter("biogw_ingest_gaps_total", "Gaps stored."),
    "dead_letters": FieldMetric.counter(
        "biogw_ingest_dead_letters_total", "Messages stored as dead letters."
    ),
    "db_failures": FieldMetric.counter(
        "biogw_ingest_db_failures_total", "Batch writes that failed and were retried."
    ),
    "mqtt_connects": FieldMetric.counter(
        "biogw_ingest_mqtt_connects_total", "Connections made to the broker."
    ),
    "mqtt_failures": FieldMetric.counter(
        "biogw_ingest_mqtt_failures_total", "Broker connections that failed or were lost."
    ),
    "subscribed": FieldMetric.gauge(
        "biogw_ingest_subscribed", "1 while the path's MQTT subscription is up."
    ),
    "pending": FieldMetric.gauge(
        "biogw_ingest_pending", "Messages received and not yet acknowledged."
    ),
    "last_commit_s": FieldMetric.gauge(
        "biogw_ingest_last_commit_seconds", "Unix time of the last committed batch."
    ),
}
VITALS_METRICS: Final = {
    "frames": FieldMetric.counter(
        "biogw_vitals_frames_total", "Stored frames handed to the processors."
    ),
    "vitals": FieldMetric.counter("biogw_vitals_stored_total", "Vitals stored."),
    "alerts": FieldMetric.counter("biogw_alerts_stored_total", "Alerts stored."),
    "skipped": FieldMetric.counter(
        "biogw_vitals_skipped_frames_total",
        "Frames not processed (redelivered, or channels no processor takes).",
    ),
    "rejected": FieldMetric.counter(
        "biogw_vitals_rejected_total", "Chunks a processor refused (bad samples)."
    ),
    "failed": FieldMetric.counter(
        "biogw_vitals_failed_total", "Processor failures (the stream starts afresh)."
    ),
    "dropped": FieldMetric.counter(
        "biogw_vitals_dropped_total", "Findings the database refused (not retried)."
    ),
    "restarts": FieldMetric.counter(
        "biogw_vitals_track_restarts_total", "Streams restarted after a gap."
    ),
    "held": FieldMetric.counter(
        "biogw_alerts_held_total",
        "Alerts stored but not published: the same subject and kind was announced lately.",
    ),
    "db_failures": FieldMetric.counter(
        "biogw_vitals_db_failures_total", "Vitals writes that failed and were retried."
    ),
    "tracks": FieldMetric.gauge("biogw_vitals_tracks", "Streams being processed."),
    "queued": FieldMetric.gauge("biogw_vitals_queued_batches", "Batches waiting."),
}
ALERT_METRICS: Final = {
    "published": FieldMetric.counter("biogw_alerts_published_total", "Alerts published."),
    "dropped": FieldMetric.counter(
        "biogw_alerts_dropped_total", "Alerts not published: queue full (they are stored)."
    ),
    "failures": FieldMetric.counter(
        "biogw_alerts_mqtt_failures_total", "Alert broker connections that failed."
    ),
    "connected": FieldMetric.gauge("biogw_alerts_connected", "1 while connected."),
    "queued": FieldMetric.gauge("biogw_alerts_queued", "Alerts waiting to be published."),
}
_SCHEMA: Final[dict[IngestPath, SignalSchema]] = {
    IngestPath.CLINICAL: "clinical",
    IngestPath.RESEARCH: "pseudo",
}


class _ReasonSource:
    """Dead letters per reason (the reasons are a fixed set of short tags)."""

    def __init__(self, path: IngestPath, counters: IngestCounters) -> None:
        self._path, self._counters = path, counters

    def samples(self) -> Iterator[Sample]:
        for reason, count in sorted(self._counters.dead_letter_reasons.items()):
            yield Sample(
                "biogw_ingest_dead_letter_reasons_total",
                "counter",
                "Dead letters by reason.",
                {"path": self._path.value, "reason": reason},
                count,
            )


@dataclass(slots=True)
class IngestHandle:
    """The running parts, for the CLI, the demo and tests."""

    ingesters: list[PathIngester] = field(default_factory=list)
    vitals: list[VitalsStage] = field(default_factory=list)
    alerts: AlertPublisher | None = None
    metrics_address: tuple[str, int] | None = None

    def counters(self, path: IngestPath) -> IngestCounters | None:
        for ingester in self.ingesters:
            if ingester.path is path:
                return ingester.counters
        return None


def _dsns(settings: Settings, care_dsn: str | None, research_dsn: str | None) -> dict[str, str]:
    wanted = {"clinical": care_dsn, "research": research_dsn}
    missing = [p for p in settings.ingest.paths if wanted[p] is None]
    if missing:
        raise ConfigError(
            "ingest.paths",
            tuple(f"path {p!r} needs its database (database.*_dsn)" for p in missing),
        )
    return {p: d for p, d in wanted.items() if d is not None and p in settings.ingest.paths}


async def run_ingest(
    settings: Settings,
    *,
    care_dsn: str | None,
    research_dsn: str | None,
    retention: bool = False,
    ready: Callable[[IngestHandle], None] | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run the configured paths until cancelled; ``ready`` is called once started.
    ``retention``: also run the retention job every ``retention.interval_s`` (needs the
    tables' owner in the DSNs). ``metrics_port`` overrides ``metrics.port`` (the gateway's
    default) for this process's endpoint; 0 picks a free one."""
    dsns = _dsns(settings, care_dsn, research_dsn)
    handle = IngestHandle()
    metrics = GatewayMetrics()
    cfg = settings.ingest
    policy = BackoffPolicy(initial_s=cfg.retry_initial_s, max_s=cfg.retry_max_s)
    if cfg.vitals and cfg.publish_alerts and "clinical" in dsns:
        handle.alerts = AlertPublisher(
            settings.mqtt, client_id=f"biogw-{cfg.id}-alerts", policy=policy
        )
        metrics.register(DataclassSource(handle.alerts.counters, ALERT_METRICS))
    for name, dsn in dsns.items():
        path = IngestPath(name)
        labels = {"path": name}
        stage = None
        if cfg.vitals:
            publish = handle.alerts.offer if handle.alerts is not None else None
            stage = VitalsStage(path, dsn=dsn, policy=policy, on_alert=publish)
            handle.vitals.append(stage)
            metrics.register(DataclassSource(stage.counters, VITALS_METRICS, labels=labels))
        ingester = PathIngester(path, dsn=dsn, mqtt=settings.mqtt, ingest=cfg, vitals=stage)
        handle.ingesters.append(ingester)
        metrics.register(DataclassSource(ingester.counters, INGEST_METRICS, labels=labels))
        metrics.register(_ReasonSource(ingester.path, ingester.counters))
    async with AsyncExitStack() as stack:
        if settings.metrics.enabled:
            port = settings.metrics.port if metrics_port is None else metrics_port
            handle.metrics_address = await stack.enter_async_context(
                serve_metrics(metrics, host=settings.metrics.host, port=port)
            )
        group = await stack.enter_async_context(asyncio.TaskGroup())
        for ingester in handle.ingesters:
            group.create_task(ingester.run(), name=f"ingest[{ingester.path}]")
        for stage in handle.vitals:
            group.create_task(stage.run(), name=f"vitals[{stage.path}]")
        if handle.alerts is not None:
            group.create_task(handle.alerts.run(), name="alerts")
        if retention:
            targets = [(_SCHEMA[IngestPath(p)], d) for p, d in dsns.items()]
            group.create_task(_retention_loop(settings, targets), name="retention")
        logger.info("ingest: %d path(s) started", len(handle.ingesters))
        if ready is not None:
            ready(handle)
        await asyncio.Event().wait()  # until cancelled


async def run_retention_once(
    settings: Settings, targets: Sequence[tuple[SignalSchema, str]], *, now: datetime
) -> dict[SignalSchema, tuple[int, int]]:
    """Apply the configured periods to each (schema, DSN); returns (partitions dropped,
    rows deleted) per schema."""
    done: dict[SignalSchema, tuple[int, int]] = {}
    for schema, dsn in targets:
        periods = (
            settings.retention.clinical if schema == "clinical" else settings.retention.research
        )
        slack = timedelta(weeks=MAX_SHIFT_WEEKS) if schema == "pseudo" else timedelta(0)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            report = await apply_retention(conn, schema, periods, now=now, shift_slack=slack)
        done[schema] = (len(report.dropped), sum(report.deleted.values()))
    return done


async def _retention_loop(settings: Settings, targets: Sequence[tuple[SignalSchema, str]]) -> None:
    while True:
        try:
            await run_retention_once(settings, targets, now=datetime.now(UTC))
        except (StoreError, psycopg.Error) as exc:
            logger.warning("retention failed, retried next interval (%s)", type(exc).__name__)
        await asyncio.sleep(settings.retention.interval_s)
