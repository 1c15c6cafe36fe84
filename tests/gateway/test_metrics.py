"""Tests for gateway.metrics: sources read live, the exposition, and the HTTP endpoint.

Every HTTP test goes over a real loopback socket to ``serve_metrics`` on a free port with
a raw asyncio client (one request per connection, read until the server closes) and
parses what it gets with prometheus_client's own text parser. The sources are the real
counter types (``StreamCounters``, ``RouterCounters``) and small dataclasses written here.
Waits are on the server's replies and on events, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway.ble.stream import StreamCounters
from gateway.metrics import (
    DataclassSource,
    FieldMetric,
    FunctionSource,
    GatewayMetrics,
    MetricsError,
    RouterSource,
    Sample,
    stream_source,
)
from gateway.metrics_http import MAX_REQUEST_BYTES, serve_metrics
from gateway.router import Path, RouterCounters

MAC_RE = re.compile(r"(?:[0-9A-F]{2}[:-]){5}[0-9A-F]{2}", re.IGNORECASE)
LOOPBACK = "127.0.0.1"
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


async def exchange(address: tuple[str, int], raw: bytes) -> Reply:
    """Send ``raw``, read until the server closes the connection, parse the reply."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(raw)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return parse_reply(data)


def parse_reply(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    version, code, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    assert int(headers["content-length"]) == len(body) or not body
    return Reply(int(code), headers, body)


def request(method: str = "GET", target: str = "/metrics", *extra: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", *extra, "", ""]
    return "\r\n".join(lines).encode("ascii")


async def scrape(address: tuple[str, int]) -> Series:
    reply = await exchange(address, request())
    assert reply.status == 200
    assert reply.headers["content-type"] == CONTENT_TYPE_LATEST
    return parse(reply.body)


def parse(body: bytes) -> Series:
    """Every sample as ``(sample name, labels) -> value``."""
    series: Series = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in series
            series[key] = s.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics()


@dataclass(slots=True)
class SpoolLike:
    """Stands for the spool's / publisher's counters: plugs in with a table alone."""

    messages: int = 0
    bytes_held: int = 0
    evicted_research: int = 0


SPOOL_TABLE = {
    "messages": FieldMetric("biogw_spool_messages", "gauge", "Messages in the spool."),
    "bytes_held": FieldMetric("biogw_spool_bytes", "gauge", "Payload bytes in the spool."),
    "evicted_research": FieldMetric(
        "biogw_spool_evicted_total", "counter", "Messages evicted.", {"path": "research"}
    ),
}


class StaticSource:
    def __init__(self, *samples: Sample) -> None:
        self._samples = samples

    def samples(self) -> Iterable[Sample]:
        return self._samples


# --- sources and the exposition ---------------------------------------------------------


async def test_scrape_follows_the_sources_live(metrics: GatewayMetrics) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    counters_a, counters_b = StreamCounters(), StreamCounters(frames=7, samples=910)
    router, spool, queue = RouterCounters(), SpoolLike(), asyncio.Queue[int]()
    metrics.register(stream_source(a, counters_a))
    metrics.register(stream_source(b, counters_b))
    metrics.register(RouterSource(router))
    metrics.register(DataclassSource(spool, SPOOL_TABLE))
    depth = "biogw_edge_queue_depth"
    metrics.register(FunctionSource(depth, "gauge", "Frames queued.", queue.qsize))
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        assert address[1] != 0
        first = await scrape(address)
        assert value(first, "biogw_frames_total", device=a) == 0
        assert value(first, "biogw_frames_total", device=b) == 7
        assert value(first, "biogw_samples_total", device=b) == 910
        assert value(first, depth) == 0
        assert not any(name == "biogw_router_frames_total" for name, _ in first)

        counters_a.notifications += 5
        counters_a.dropped_notifications += 2
        counters_a.decode_errors += 1
        router[(Path.CLINICAL, "permitted")] += 3
        router[(Path.RESEARCH, "no_consent")] += 4
        spool.messages, spool.bytes_held, spool.evicted_research = 12, 4096, 1
        queue.put_nowait(1)
        second = await scrape(address)
    assert value(second, "biogw_notifications_total", device=a) == 5
    assert value(second, "biogw_notifications_dropped_total", device=a) == 2
    assert value(second, "biogw_decode_errors_total", device=a) == 1
    router_total = "biogw_router_frames_total"
    assert value(second, router_total, path="clinical", outcome="emitted", reason="permitted") == 3
    assert value(second, router_total, path="research", outcome="dropped", reason="no_consent") == 4
    assert value(second, "biogw_spool_messages") == 12
    assert value(second, "biogw_spool_bytes") == 4096
    assert value(second, "biogw_spool_evicted_total", path="research") == 1
    assert value(second, depth) == 1
    assert value(second, "biogw_metrics_scrapes_total") == 1  # counted after rendering


def test_counter_families_carry_total_exactly_once(metrics: GatewayMetrics) -> None:
    metrics.register(stream_source(str(uuid.uuid4()), StreamCounters(frames=1)))
    metrics.register(DataclassSource(SpoolLike(), SPOOL_TABLE))
    text = metrics.render().decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    assert types["biogw_frames_total"] == "counter"
    assert types["biogw_spool_evicted_total"] == "counter"
    assert types["biogw_spool_bytes"] == "gauge"
    assert all(name.endswith("_total") == (kind == "counter") for name, kind in types.items())
    assert "_total_total" not in text
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["biogw_frames"] == "counter"


def test_unregister_removes_the_series_and_registries_are_separate() -> None:
    one, two = GatewayMetrics(), GatewayMetrics()
    key = str(uuid.uuid4())
    source = stream_source(key, StreamCounters(frames=2))
    one.register(source)
    assert value(parse(one.render()), "biogw_frames_total", device=key) == 2
    assert "biogw_frames_total" not in two.render().decode()
    assert REGISTRY.get_sample_value("biogw_frames_total", {"device": key}) is None
    with pytest.raises(MetricsError):
        one.register(source)
    one.unregister(source)
    assert "biogw_frames_total" not in one.render().decode()
    with pytest.raises(MetricsError):
        one.unregister(source)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("biogw_x", "gauge", "h"), ("biogw_x_total", "counter", "h")),  # one base, two kinds
        (("biogw_x", "gauge", "h"), ("biogw_x", "gauge", "other help")),
        (("biogw_x", "gauge", "h"), ("biogw_x", "gauge", "h")),  # one series twice
    ],
)
def test_conflicting_samples_across_sources_raise(
    metrics: GatewayMetrics, first: tuple[str, str, str], second: tuple[str, str, str]
) -> None:
    metrics.register(StaticSource(Sample(*first, {}, 1)))  # type: ignore[arg-type]
    metrics.register(StaticSource(Sample(*second, {}, 2)))  # type: ignore[arg-type]
    with pytest.raises(MetricsError):
        metrics.render()


def test_one_family_needs_one_set_of_label_names(metrics: GatewayMetrics) -> None:
    metrics.register(StaticSource(Sample("biogw_x", "gauge", "h", {"path": "clinical"}, 1)))
    metrics.register(StaticSource(Sample("biogw_x", "gauge", "h", {"stream": "ecg"}, 1)))
    with pytest.raises(MetricsError):
        metrics.render()


@pytest.mark.parametrize(
    ("name", "kind", "labels", "number"),
    [
        ("frames_total", "counter", {}, 1),  # no biogw_ prefix
        ("biogw_frames", "counter", {}, 1),  # counter without _total
        ("biogw_depth_total", "gauge", {}, 1),  # gauge with _total
        ("biogw_Frames_total", "counter", {}, 1),
        ("biogw_frames_total", "histogram", {}, 1),
        ("biogw_frames_total", "counter", {}, -1),  # counters never go down
        ("biogw_frames_total", "counter", {}, float("nan")),
        ("biogw_frames_total", "counter", {}, True),
        ("biogw_frames_total", "counter", {"subject": "x"}, 1),  # not an allowed label
        ("biogw_frames_total", "counter", {"reason": ""}, 1),
        ("biogw_frames_total", "counter", {"reason": "a\nb"}, 1),
        ("biogw_frames_total", "counter", {"reason": "x" * 129}, 1),
        ("biogw_frames_total", "counter", {"reason": "lost C0:FF:EE:00:11:22"}, 1),
        ("biogw_frames_total", "counter", {"device": "dev-0a1b2c3d4e5f"}, 1),
    ],
)
def test_misdefined_samples_are_rejected(
    name: str, kind: str, labels: dict[str, str], number: float
) -> None:
    with pytest.raises(MetricsError):
        Sample(name, kind, "help", labels, number)  # type: ignore[arg-type]


def test_dataclass_source_checks_its_table_up_front() -> None:
    with pytest.raises(MetricsError):
        DataclassSource(SpoolLike(), {"nope": FieldMetric("biogw_nope", "gauge", "h")})
    with pytest.raises(MetricsError):
        DataclassSource(SpoolLike(), {"messages": FieldMetric("biogw_m", "counter", "h")})
    with pytest.raises(MetricsError):
        DataclassSource(SpoolLike, SPOOL_TABLE)  # the class, not an instance
    same_series = FieldMetric.gauge("biogw_spool_bytes", "Payload bytes.")
    with pytest.raises(MetricsError):
        DataclassSource(SpoolLike(), {"messages": same_series, "bytes_held": same_series})


def _mac(octets: list[int], sep: str, upper: bool) -> str:
    text = sep.join(f"{o:02x}" for o in octets)
    return text.upper() if upper else text


MACS = st.builds(
    _mac,
    st.lists(st.integers(0, 255), min_size=6, max_size=6),
    st.sampled_from([":", "-"]),
    st.booleans(),
)


@given(st.lists(st.uuids(), min_size=1, max_size=16, unique=True))
def test_device_labels_are_exactly_the_device_keys(keys: list[uuid.UUID]) -> None:
    metrics = GatewayMetrics()
    for n, key in enumerate(keys):
        metrics.register(stream_source(str(key), StreamCounters(frames=n)))
    text = metrics.render().decode()
    assert not MAC_RE.search(text)
    devices = {
        s.labels["device"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "device" in s.labels
    }
    assert devices == {str(key) for key in keys}


@given(st.one_of(MACS, st.uuids().map(lambda u: str(u).upper()), st.text(max_size=40)))
def test_anything_but_a_device_key_is_refused_as_device(candidate: str) -> None:
    try:
        canonical = str(uuid.UUID(candidate)) == candidate
    except ValueError:
        canonical = False
    assume(not canonical)
    with pytest.raises(MetricsError):
        stream_source(candidate, StreamCounters())


@given(MACS, st.sampled_from(["path", "stream", "reason", "cause", "outcome"]))
def test_no_label_may_carry_a_mac(mac: str, label: str) -> None:
    with pytest.raises(MetricsError):
        Sample("biogw_x_total", "counter", "h", {label: f"x{mac}y"}, 1)


# --- the HTTP endpoint ------------------------------------------------------------------


async def test_head_sends_the_headers_of_a_get_without_a_body(metrics: GatewayMetrics) -> None:
    metrics.register(stream_source(str(uuid.uuid4()), StreamCounters(frames=3)))
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        expected = metrics.render()
        reply = await exchange(address, request("HEAD"))
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["content-type"] == CONTENT_TYPE_LATEST
    assert int(reply.headers["content-length"]) == len(expected)
    assert reply.headers["connection"] == "close"


async def test_other_paths_404_and_other_methods_405(metrics: GatewayMetrics) -> None:
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        assert (await exchange(address, request("GET", "/"))).status == 404
        assert (await exchange(address, request("GET", "/metricsx"))).status == 404
        assert (await exchange(address, request("POST", "/other"))).status == 404
        reply = await exchange(address, request("POST", "/metrics", "Content-Length: 0"))
        assert reply.status == 405
        assert reply.headers["allow"] == "GET, HEAD"
        assert (await exchange(address, request("DELETE"))).status == 405
        query = await exchange(address, request("GET", "/metrics?name[]=x"))
        assert query.status == 200
        after = await scrape(address)
    rejected = "biogw_metrics_rejected_requests_total"
    assert value(after, rejected, reason="not_found") == 3
    assert value(after, rejected, reason="method_not_allowed") == 2
    assert value(after, "biogw_metrics_bad_requests_total") == 0
    assert value(after, "biogw_metrics_scrapes_total") == 1


MALFORMED = [
    b"\r\n\r\n",
    b"garbage\r\n\r\n",
    b"GET /metrics\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://x/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nNo-Colon\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: b\r\n folded\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n",
    b"GET /metrics HTTP/1.1\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n",  # ends before the blank line
]


@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_requests_get_400_and_are_counted(
    metrics: GatewayMetrics, raw: bytes
) -> None:
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        reply = await exchange_half_closed(address, raw)
        assert reply.status == 400
        assert reply.headers["connection"] == "close"
        after = await scrape(address)
    assert value(after, "biogw_metrics_bad_requests_total") == 1
    assert value(after, "biogw_metrics_scrapes_total") == 0


async def exchange_half_closed(address: tuple[str, int], raw: bytes) -> Reply:
    """Like ``exchange`` but the client shuts its side after sending (so a request that
    stops before its blank line is seen to end)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(raw)
        writer.write_eof()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return parse_reply(data)


def _padded(total: int) -> bytes:
    """A valid scrape request whose head, blank line included, is ``total`` bytes."""
    base = request("GET", "/metrics", "X-Pad: ")
    pad = total - len(base)
    assert pad > 0
    return base[:-4] + b"p" * pad + b"\r\n\r\n"


async def test_request_size_limit_is_exact(metrics: GatewayMetrics) -> None:
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        at_limit = await exchange(address, _padded(MAX_REQUEST_BYTES))
        over = await exchange(address, _padded(MAX_REQUEST_BYTES + 1))
        far_over = await exchange(address, _padded(4 * MAX_REQUEST_BYTES))
        after = await scrape(address)
    assert at_limit.status == 200
    assert over.status == 400
    assert far_over.status == 400
    assert value(after, "biogw_metrics_bad_requests_total") == 2


async def test_a_request_far_over_the_limit_still_reads_its_400(metrics: GatewayMetrics) -> None:
    """The server half-closes and discards the rest before closing, so the unread input
    does not reset the connection before the client has read the reply."""
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        replies = [await exchange(address, _padded(200_000)) for _ in range(5)]
        after = await scrape(address)
    assert [reply.status for reply in replies] == [400] * 5
    assert value(after, "biogw_metrics_bad_requests_total") == 5


async def test_http_1_0_needs_no_host(metrics: GatewayMetrics) -> None:
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        reply = await exchange(address, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert reply.status == 200
    assert "biogw_metrics_scrapes_total" in reply.body.decode()


async def test_a_silent_connection_is_not_a_bad_request(metrics: GatewayMetrics) -> None:
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        reply_bytes = await _connect_and_close(address)
        after = await scrape(address)
    assert reply_bytes == b""
    assert value(after, "biogw_metrics_bad_requests_total") == 0


async def _connect_and_close(address: tuple[str, int]) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write_eof()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def test_a_slow_request_times_out_with_408(metrics: GatewayMetrics) -> None:
    async with serve_metrics(metrics, host=LOOPBACK, port=0, read_timeout_s=0.2) as address:
        reply = await exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        after = await scrape(address)
    assert reply.status == 408
    assert value(after, "biogw_metrics_rejected_requests_total", reason="timeout") == 1


async def test_concurrent_scrapes_all_succeed(metrics: GatewayMetrics) -> None:
    keys = [str(uuid.uuid4()) for _ in range(20)]
    for n, key in enumerate(keys):
        metrics.register(stream_source(key, StreamCounters(frames=n, samples=10 * n)))
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        results = await asyncio.gather(*(scrape(address) for _ in range(64)))
        after = await scrape(address)
    for series in results:
        assert [value(series, "biogw_samples_total", device=k) for k in keys] == [
            10 * n for n in range(20)
        ]
    assert value(after, "biogw_metrics_scrapes_total") == 64


async def test_a_failing_source_gives_500_and_the_endpoint_keeps_serving(
    metrics: GatewayMetrics,
) -> None:
    clash = StaticSource(Sample("biogw_frames_total", "counter", "other help", {}, 1))
    metrics.register(stream_source(str(uuid.uuid4()), StreamCounters()))
    async with serve_metrics(metrics, host=LOOPBACK, port=0) as address:
        metrics.register(clash)
        failed = await exchange(address, request())
        metrics.unregister(clash)
        after = await scrape(address)
    assert failed.status == 500
    assert value(after, "biogw_metrics_render_errors_total") == 1


class BigHelp:
    """A gauge whose help text makes the response far larger than socket buffers; it
    sets ``rendered`` when the endpoint reads it (the response is written right after,
    in the same step of the event loop)."""

    def __init__(self) -> None:
        self.rendered = asyncio.Event()

    def samples(self) -> Iterator[Sample]:
        self.rendered.set()
        yield Sample("biogw_big", "gauge", "h" * (32 << 20), {}, 1)


def _no_other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_exit_closes_idle_connections_and_finishes_every_handler(
    metrics: GatewayMetrics,
) -> None:
    started = time.monotonic()
    async with serve_metrics(metrics, host=LOOPBACK, port=0, shutdown_grace_s=60) as address:
        idle_reader, idle_writer = await asyncio.open_connection(*address)
        half_reader, half_writer = await asyncio.open_connection(*address)
        half_writer.write(b"GET /metrics HTTP/1.1\r\n")
        await half_writer.drain()
        await scrape(address)  # both connections above were accepted before this one
    elapsed = time.monotonic() - started
    assert await idle_reader.read() == b""
    assert await half_reader.read() == b""
    for writer in (idle_writer, half_writer):
        writer.close()
        await writer.wait_closed()
    assert _no_other_tasks() == set()
    assert elapsed < 30  # idle connections did not wait for the 60 s grace
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*address)
    gc.collect()  # an unclosed transport would warn (warnings are errors here)


async def test_a_stalled_scraper_is_cut_off_after_the_grace(metrics: GatewayMetrics) -> None:
    big = BigHelp()
    metrics.register(big)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    async with serve_metrics(metrics, host=LOOPBACK, port=0, shutdown_grace_s=0.1) as address:
        await asyncio.get_running_loop().sock_connect(sock, address)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(request())
        await writer.drain()
        await big.rendered.wait()  # the handler is now blocked writing 32 MiB
    assert _no_other_tasks() == set()
    try:
        received = len(await reader.read())
    except ConnectionResetError:
        received = -1
    writer.close()
    with contextlib.suppress(ConnectionResetError):
        await writer.wait_closed()
    assert received < (32 << 20)
