"""The gateway's metric sources: which counters ``biogw gateway`` exports, under what names.

Role: tables mapping the running parts' counters (device sessions, the edge pipeline,
the outbox, the spool, the publisher, the slot budget, the router) to Prometheus metrics
(``gateway.metrics``), read at scrape time. Per-device series are labelled with the
device key (a random UUID). A device's notification/frame counters belong to its current
connection and restart from zero after a reconnect (Prometheus' ``rate()`` handles
counter resets); the session counters (connects, link losses, watchdog resets, drops)
span the process.

Must not: keep counts of its own, or label anything with a subject id, MAC or name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

from gateway.ble.session import DeviceSession
from gateway.ble.slots import SlotBudget
from gateway.metrics import (
    STREAM_METRICS,
    DataclassSource,
    FieldMetric,
    FunctionSource,
    MetricSource,
    RouterSource,
    Sample,
)
from gateway.router import Router

if TYPE_CHECKING:
    from gateway.app import GatewayHandle

__all__ = ["gateway_sources"]

_SESSION: Final = {
    "connects": FieldMetric("biogw_connects_total", "counter", "Device connections made."),
    "connect_failures": FieldMetric(
        "biogw_connect_failures_total", "counter", "Device connection attempts that failed."
    ),
    "link_losses": FieldMetric("biogw_link_losses_total", "counter", "Device links lost."),
    "watchdog_resets": FieldMetric(
        "biogw_watchdog_resets_total", "counter", "Silent devices reconnected by the watchdog."
    ),
    "refusals": FieldMetric(
        "biogw_device_refusals_total", "counter", "Devices that refused to stream."
    ),
}
_EDGE: Final = {
    "frames": FieldMetric("biogw_edge_frames_total", "counter", "Frames through the edge."),
    "samples": FieldMetric("biogw_edge_samples_total", "counter", "Samples through the edge."),
    "gaps": FieldMetric("biogw_gaps_total", "counter", "Gaps found (before consent routing)."),
    "gap_samples": FieldMetric(
        "biogw_gap_samples_total", "counter", "Samples missing in the gaps found."
    ),
    "queue_depth": FieldMetric(
        "biogw_edge_queue_depth", "gauge", "Items waiting in the edge queue (last burst)."
    ),
}
_OUTBOX: Final = {
    "refused_clinical": FieldMetric(
        "biogw_spool_refused_total",
        "counter",
        "Frames the full spool refused (recorded as spool_full gaps).",
        {"path": "clinical"},
    ),
    "refused_research": FieldMetric(
        "biogw_spool_refused_total",
        "counter",
        "Frames the full spool refused (recorded as spool_full gaps).",
        {"path": "research"},
    ),
}


class _SessionSource:
    """One device session; its stream counters are looked up on every scrape (a new
    connection has new ones)."""

    def __init__(self, session: DeviceSession) -> None:
        self._session = session
        labels = {"device": session.device_key}
        self._own = DataclassSource(session.counters, _SESSION, labels=labels)
        self._labels = labels

    def samples(self) -> Iterator[Sample]:
        yield from self._own.samples()
        stream = self._session.counters.stream
        yield from DataclassSource(stream, STREAM_METRICS, labels=self._labels).samples()


def gateway_sources(
    handle: GatewayHandle, slots: SlotBudget, router: Router
) -> Iterable[MetricSource]:
    """Every metric source of a running gateway."""
    spool, publisher = handle.spool, handle.publisher
    sources: list[MetricSource] = [_SessionSource(s) for s in handle.sessions]
    sources += [
        DataclassSource(handle.edge.counters, _EDGE),
        DataclassSource(handle.outbox.counters, _OUTBOX),
        RouterSource(router.counters),
        FunctionSource(
            "biogw_spool_bytes", "gauge", "Bytes held in the spool.", lambda: spool.counters.bytes
        ),
        FunctionSource(
            "biogw_spool_records",
            "gauge",
            "Records held in the spool (not yet acknowledged by the broker).",
            lambda: spool.counters.records,
        ),
        FunctionSource(
            "biogw_spool_evicted_total",
            "counter",
            "Research records evicted from the full spool.",
            lambda: spool.counters.evicted_research,
        ),
        FunctionSource(
            "biogw_published_total",
            "counter",
            "Messages published and acknowledged by the broker.",
            lambda: publisher.stats().acked,
        ),
        FunctionSource(
            "biogw_mqtt_reconnects_total",
            "counter",
            "Broker reconnections.",
            lambda: publisher.stats().reconnects,
        ),
        FunctionSource(
            "biogw_mqtt_in_flight",
            "gauge",
            "Unacknowledged publishes.",
            lambda: publisher.stats().in_flight,
        ),
        FunctionSource(
            "biogw_slots_in_use", "gauge", "Connection slots held.", lambda: slots.in_use
        ),
        FunctionSource(
            "biogw_slots_waiting", "gauge", "Devices waiting for a slot.", lambda: slots.waiting
        ),
    ]
    return sources
