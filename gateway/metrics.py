"""Prometheus metrics: read the gateway's own counters at scrape time and serve them.

Role: components keep their counters in their own slotted dataclasses (``StreamCounters``,
``RouterCounters``, the edge's, the spool's, the publisher's); a ``MetricSource``
turns one of them into ``Sample`` values, and ``GatewayMetrics`` (one per gateway, with
its own ``CollectorRegistry``) groups the samples of every registered source into metric
families when scraped. ``gateway.metrics_http.serve_metrics`` serves them over HTTP.

Naming: every name starts ``biogw_``; counters end ``_total`` (prometheus_client strips
it from the family and adds it back in the exposition). Labels come from a fixed set;
``device`` is the biogw device key (a canonical UUID, checked), never a MAC (no label value
may look like one), a name or a subject id (which the caller must not pass: a subject id
is a UUID too). Programming errors (a bad name or label, two kinds or helps under one
name, one series from two sources) raise ``MetricsError``; over HTTP that is a 500.

Must not: use the default ``REGISTRY`` or keep metric objects or state at module level;
count anything twice (components own their counters; this module only reads them);
start threads; log request bytes, label values or payloads above DEBUG.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from devices.errors import BiogwError

if TYPE_CHECKING:  # only for annotations: this module reads them, it imports no I/O stack
    from gateway.ble.stream import StreamCounters
    from gateway.router import RouterCounters

__all__ = [
    "ALLOWED_LABELS",
    "HTTP_METRICS",
    "STREAM_METRICS",
    "DataclassSource",
    "FieldMetric",
    "FunctionSource",
    "GatewayMetrics",
    "HttpCounters",
    "Kind",
    "MetricSource",
    "MetricsError",
    "RouterSource",
    "Sample",
    "stream_source",
]

logger = logging.getLogger(__name__)

Kind = Literal["counter", "gauge"]
ALLOWED_LABELS: Final = frozenset({"device", "path", "stream", "reason", "cause", "outcome"})
"""Label names a sample may carry; a new one is a deliberate (privacy-reviewed) change."""
_NAME_RE: Final = re.compile(r"biogw_[a-z](?:[a-z0-9_]*[a-z0-9])?")
_MAC_RE: Final = re.compile(r"(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}")
_DEVICE_KEY_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""``str(uuid.UUID(...))`` form: the only form a device key takes in a label."""
_MAX_LABEL_VALUE: Final = 128


class MetricsError(BiogwError, ValueError):
    """A metric or source is misdefined (a programming error). ``metric`` names it."""

    def __init__(self, metric: str, reason: str) -> None:
        self.metric = metric
        self.reason = reason
        super().__init__(f"{metric}: {reason}")


def _check_label(metric: str, name: str, value: object) -> None:
    if name not in ALLOWED_LABELS:
        raise MetricsError(metric, f"label {name!r} is not one of ALLOWED_LABELS")
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_LABEL_VALUE:
        raise MetricsError(metric, f"label {name!r}: value must be a non-empty short str")
    if not value.isprintable() or _MAC_RE.search(value):
        raise MetricsError(metric, f"label {name!r}: value not allowed")
    if name == "device" and not _DEVICE_KEY_RE.fullmatch(value):
        raise MetricsError(metric, "label 'device' must be a device key (canonical UUID)")


@dataclass(frozen=True, slots=True)
class Sample:
    """One series' value at scrape time. Checked on construction (see the module doc)."""

    name: str
    kind: Kind
    help: str
    labels: Mapping[str, str]
    value: float

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise MetricsError(str(name), "name must match biogw_[a-z][a-z0-9_]*")
        if self.kind not in ("counter", "gauge"):
            raise MetricsError(name, f"unknown kind {self.kind!r}")
        if (self.kind == "counter") != name.endswith("_total"):
            raise MetricsError(name, "counters, and only counters, end in _total")
        if not self.help:
            raise MetricsError(name, "help text is required")
        for label, value in self.labels.items():
            _check_label(name, label, value)
        number: object = self.value
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise MetricsError(name, f"value must be a number, not {type(number).__name__}")
        if self.kind == "counter" and not (math.isfinite(number) and number >= 0):
            raise MetricsError(name, "a counter must be finite and >= 0")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


class MetricSource(Protocol):
    """Anything that can report its current values; called on every scrape (in the
    event loop, so it must be quick and must not block)."""

    def samples(self) -> Iterable[Sample]: ...


@dataclass(slots=True)
class _Family:
    kind: Kind
    help: str
    label_names: tuple[str, ...]
    series: dict[tuple[str, ...], float] = field(default_factory=dict)


def _families(batches: Iterable[Iterable[Sample]]) -> dict[str, _Family]:
    """Group samples by name; reject conflicting kinds, helps, label sets, duplicates."""
    families: dict[str, _Family] = {}
    bases: dict[str, str] = {}
    for batch in batches:
        for sample in batch:
            base = sample.name.removesuffix("_total") if sample.kind == "counter" else sample.name
            if bases.setdefault(base, sample.name) != sample.name:
                raise MetricsError(sample.name, f"clashes with {bases[base]!r}")
            names = tuple(sorted(sample.labels))
            family = families.setdefault(sample.name, _Family(sample.kind, sample.help, names))
            if family.kind != sample.kind:
                raise MetricsError(sample.name, "reported as both counter and gauge")
            if family.help != sample.help:
                raise MetricsError(sample.name, "reported with two help texts")
            if family.label_names != names:
                raise MetricsError(sample.name, "reported with two sets of label names")
            key = tuple(sample.labels[n] for n in names)
            if key in family.series:
                raise MetricsError(sample.name, "one series reported twice")
            family.series[key] = float(sample.value)
    return families


class _SourceCollector:
    """The one collector in a ``GatewayMetrics`` registry: reads the sources per scrape."""

    def __init__(self, sources: Callable[[], Iterable[MetricSource]]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        batches = (source.samples() for source in self._sources())
        for name, family in sorted(_families(batches).items()):
            metric: CounterMetricFamily | GaugeMetricFamily
            if family.kind == "counter":
                metric = CounterMetricFamily(name, family.help, labels=family.label_names)
            else:
                metric = GaugeMetricFamily(name, family.help, labels=family.label_names)
            for values, value in sorted(family.series.items()):
                metric.add_metric(values, value)
            yield metric


@dataclass(frozen=True, slots=True)
class FieldMetric:
    """How one dataclass field is exported: name, kind, help, and fixed extra labels."""

    name: str
    kind: Kind
    help: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def counter(cls, name: str, help: str, **labels: str) -> FieldMetric:
        return cls(name, "counter", help, labels)

    @classmethod
    def gauge(cls, name: str, help: str, **labels: str) -> FieldMetric:
        return cls(name, "gauge", help, labels)


class DataclassSource:
    """Samples from the int (or float) fields of a counters dataclass, per ``table``
    (field name → ``FieldMetric``), each with ``labels`` added. The table is checked
    against the dataclass's fields and the names and labels here, not at scrape time."""

    def __init__(
        self,
        counters: object,
        table: Mapping[str, FieldMetric],
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if not dataclasses.is_dataclass(counters) or isinstance(counters, type):
            raise MetricsError(type(counters).__name__, "not a dataclass instance")
        known = {f.name for f in dataclasses.fields(counters)}
        for field_name, metric in table.items():
            if field_name not in known:
                raise MetricsError(metric.name, f"no field {field_name!r} on the dataclass")
        self._counters = counters
        self._table = dict(table)
        self._labels = dict(labels or {})
        _families([self._build(lambda _: 0)])  # check names, labels and consistency now

    def _build(self, read: Callable[[str], object]) -> Iterable[Sample]:
        for field_name, m in self._table.items():
            value = read(field_name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise MetricsError(m.name, f"field {field_name!r} is not a number")
            yield Sample(m.name, m.kind, m.help, {**self._labels, **m.labels}, value)

    def samples(self) -> Iterable[Sample]:
        return self._build(lambda name: getattr(self._counters, name))


class FunctionSource:
    """One sample read from a callable at scrape time (queue depths, spool bytes)."""

    def __init__(
        self,
        name: str,
        kind: Kind,
        help: str,
        read: Callable[[], float],
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self._template = Sample(name, kind, help, dict(labels or {}), 0)
        self._read = read

    def samples(self) -> Iterable[Sample]:
        t = self._template
        return (Sample(t.name, t.kind, t.help, t.labels, self._read()),)


class RouterSource:
    """``biogw_router_frames_total{path, outcome, reason}`` from ``RouterCounters``;
    ``outcome`` is ``emitted`` (reason ``permitted``) or ``dropped``."""

    HELP: Final = "Frames routed per output path, by outcome and reason."

    def __init__(self, counters: RouterCounters) -> None:
        self._counters = counters

    def samples(self) -> Iterable[Sample]:
        for (path, reason), count in sorted(self._counters.items()):
            outcome = "emitted" if reason == "permitted" else "dropped"
            labels = {"path": path.value, "outcome": outcome, "reason": reason}
            yield Sample("biogw_router_frames_total", "counter", self.HELP, labels, count)


_c = FieldMetric.counter
STREAM_METRICS: Final[Mapping[str, FieldMetric]] = MappingProxyType(
    {
        "notifications": _c("biogw_notifications_total", "BLE notifications received."),
        "dropped_notifications": _c(
            "biogw_notifications_dropped_total", "Notifications dropped on a full queue."
        ),
        "decode_errors": _c("biogw_decode_errors_total", "Notifications that failed to decode."),
        "frames": _c("biogw_frames_total", "Frames decoded."),
        "samples": _c("biogw_samples_total", "Samples decoded."),
    }
)


def stream_source(device_key: str, counters: StreamCounters) -> DataclassSource:
    """One device stream's counters, labelled ``device=<device key>``."""
    return DataclassSource(counters, STREAM_METRICS, labels={"device": device_key})


@dataclass(slots=True)
class HttpCounters:
    """What the metrics endpoint itself did (every ``GatewayMetrics`` exports these)."""

    scrapes: int = 0
    bad_requests: int = 0
    not_found: int = 0
    method_not_allowed: int = 0
    timeouts: int = 0
    render_errors: int = 0


_REJECTED = "Requests to the metrics endpoint answered without metrics."
_R = "biogw_metrics_rejected_requests_total"
HTTP_METRICS: Final[Mapping[str, FieldMetric]] = MappingProxyType(
    {
        "scrapes": _c("biogw_metrics_scrapes_total", "Scrapes served."),
        "bad_requests": _c("biogw_metrics_bad_requests_total", "Malformed or oversized requests."),
        "not_found": _c(_R, _REJECTED, reason="not_found"),
        "method_not_allowed": _c(_R, _REJECTED, reason="method_not_allowed"),
        "timeouts": _c(_R, _REJECTED, reason="timeout"),
        "render_errors": _c("biogw_metrics_render_errors_total", "Scrapes that failed to render."),
    }
)


class GatewayMetrics:
    """The sources of one gateway and their registry (never the default ``REGISTRY``)."""

    def __init__(self) -> None:
        self.http = HttpCounters()
        self._sources: list[MetricSource] = [DataclassSource(self.http, HTTP_METRICS)]
        self._registry = CollectorRegistry()
        self._registry.register(_SourceCollector(lambda: tuple(self._sources)))

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    def register(self, source: MetricSource) -> None:
        if any(s is source for s in self._sources):
            raise MetricsError(type(source).__name__, "source registered twice")
        self._sources.append(source)

    def unregister(self, source: MetricSource) -> None:
        for index, s in enumerate(self._sources):
            if s is source:
                del self._sources[index]
                return
        raise MetricsError(type(source).__name__, "source not registered")

    def render(self) -> bytes:
        """The Prometheus text exposition of every source now; ``MetricsError`` if a
        source is misdefined."""
        return generate_latest(self._registry)
