"""The MQTT publisher against real brokers (tests/brokers.py), its connection arguments,
its error translation and the status payloads.

Payloads in these tests start with the spool seq (8 bytes, big-endian), so order, loss
and duplicates are checked by number end to end.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import ssl
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_ERR_NO_CONN
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from devices.frame import StreamKind
from gateway.backoff import BackoffPolicy
from gateway.config import MqttSettings
from gateway.errors import ConfigError
from gateway.transport.mqtt import (
    ConnectionState,
    MqttPublisher,
    TransportErrorKind,
    client_options,
    translate_error,
)
from gateway.transport.spool import Spool, SpoolClass, SpoolClosedError
from gateway.transport.status import (
    DeviceStatus,
    GatewayState,
    GatewayStatus,
    OfflineCause,
    StatusFormatError,
    decode_device_status,
    decode_gateway_status,
    encode_device_status,
    encode_gateway_status,
)
from gateway.transport.topics import TopicLayout
from tests.brokers import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    BrokerEndpoint,
    MosquittoBroker,
    Subscriber,
    TcpProxy,
    free_port,
    make_tls_files,
    subscribed,
)
from tests.gateway.transport.conftest import Namespace

DEVICE = UUID("6f1c0d2e-9b8a-4c7d-9e6f-5a4b3c2d1e0f")
FAST = BackoffPolicy(initial_s=0.02, max_s=0.2, stable_s=60.0)
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary")


def payload(seq: int, size: int = 64) -> bytes:
    return seq.to_bytes(8, "big") + bytes(size - 8)


def seq_of(data: bytes) -> int:
    return int.from_bytes(data[:8], "big")


class Records:
    """Appends records whose payload starts with a running number (append order is seq
    order, so the numbers must arrive ascending)."""

    def __init__(self, spool: Spool, start: int = 0) -> None:
        self.spool = spool
        self.next = start

    def append(self, topic: str, count: int, klass: SpoolClass = SpoolClass.RESEARCH) -> list[int]:
        numbers = list(range(self.next, self.next + count))
        for n in numbers:
            self.spool.append(topic, payload(n), klass)
        self.next += count
        return numbers


async def receive(sub: Subscriber, count: int) -> list[int]:
    return [seq_of((await sub.get()).payload) for _ in range(count)]


class SignallingSleep:
    """The publisher's backoff sleep: records each delay and lets a test wait for the
    n-th call. ``real`` sleeps for the delay; otherwise the n-th call never returns."""

    def __init__(self, *, real: bool, block_at: int | None = None) -> None:
        self.delays: list[float] = []
        self._real = real
        self._block_at = block_at
        self._changed = asyncio.Condition()

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)
        async with self._changed:
            self._changed.notify_all()
        if self._block_at is not None and len(self.delays) >= self._block_at:
            await asyncio.Event().wait()
        if self._real:
            await asyncio.sleep(delay_s)

    async def calls(self, n: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.delays) >= n), 30)


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``check()`` holds (no wall-clock waiting)."""
    for _ in range(10_000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def publisher(
    spool: Spool, endpoint: BrokerEndpoint, ns: Namespace, **kwargs: object
) -> MqttPublisher:
    settings = endpoint.settings(topic_prefix=ns.prefix, max_inflight=64)
    ns.retained.append(TopicLayout(ns.prefix).gateway_status(ns.gateway_id))
    ns.sessions.append(f"biogw-{ns.gateway_id}-data")  # the data connection's session
    return MqttPublisher(spool, settings=settings, gateway_id=ns.gateway_id, **kwargs)  # type: ignore[arg-type]


# -- connection arguments ------------------------------------------------------------------


def test_client_options_plain() -> None:
    settings = MqttSettings(
        host="broker.example",
        port=1884,
        username="gw",
        password=SecretStr("s3cret"),
        keepalive_s=17,
        max_inflight=99,
        topic_prefix="site/a",
    )
    opts = client_options(settings, gateway_id="gw7")
    assert (opts.hostname, opts.port, opts.identifier) == ("broker.example", 1884, "biogw-gw7")
    assert (opts.username, opts.password, opts.keepalive) == ("gw", "s3cret", 17)
    assert opts.clean_session is False
    assert opts.tls_params is None
    assert "s3cret" not in repr(opts)
    assert opts.will.topic == "site/a/status/gw7"
    assert (opts.will.qos, opts.will.retain) == (1, True)
    assert isinstance(opts.will.payload, bytes)
    assert decode_gateway_status(opts.will.payload) == GatewayStatus(
        GatewayState.OFFLINE, OfflineCause.LOST
    )


def test_client_options_tls(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    settings = MqttSettings(
        tls=True, ca_file=files["ca"], cert_file=files["cert"], key_file=files["key"]
    )
    tls = client_options(settings, gateway_id="gw1").tls_params
    assert tls is not None
    assert (tls.ca_certs, tls.certfile, tls.keyfile) == tuple(str(p) for p in files.values())
    assert tls.cert_reqs == ssl.CERT_REQUIRED
    assert tls.tls_version == ssl.PROTOCOL_TLS_CLIENT
    system = client_options(MqttSettings(tls=True), gateway_id="gw1").tls_params
    assert system is not None
    assert system.ca_certs is None  # the system trust store


@pytest.mark.parametrize(
    "fields",
    [
        {"ca_file": Path("ca.pem")},
        {"tls": True, "key_file": Path("k.pem")},
        {"password": SecretStr("x")},
    ],
)
def test_client_options_reject_inconsistent_settings(fields: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        client_options(MqttSettings(**fields), gateway_id="gw1")  # type: ignore[arg-type]


async def test_options_build_a_fresh_client_each_time() -> None:
    opts = client_options(MqttSettings(), gateway_id="gw1")
    first, second = opts.client(), opts.client()
    assert first is not second
    assert first.identifier == "biogw-gw1"
    assert first.pending_calls_threshold >= 1000  # no warning per status publish


# -- error translation ----------------------------------------------------------------------


def _raised_from(context: BaseException) -> aiomqtt.MqttError:
    """An MqttError as aiomqtt raises it for connect failures (``from None``)."""
    try:
        try:
            raise context
        except BaseException:
            raise aiomqtt.MqttError("x") from None
    except aiomqtt.MqttError as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=134)), "not_authorized"),
        (MqttConnectError(5), "not_authorized"),
        (MqttConnectError(3), "refused"),
        (aiomqtt.MqttCodeError(MQTT_ERR_NO_CONN, "x"), "connection_lost"),
        (_raised_from(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), "unreachable"),
        (_raised_from(ssl.SSLCertVerificationError("bad cert")), "tls"),
        (_raised_from(FileNotFoundError("ca.pem")), "tls"),
        (_raised_from(TimeoutError()), "timeout"),
        (aiomqtt.MqttError("odd"), "protocol"),
    ],
)
def test_translate_error(exc: aiomqtt.MqttError, kind: str) -> None:
    assert translate_error(exc).kind == TransportErrorKind(kind)


def test_translate_error_once_connected() -> None:
    """A socket error on an established connection is a lost connection; a timeout
    stays a timeout."""
    reset = _raised_from(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert translate_error(reset, connected=True).kind is TransportErrorKind.CONNECTION_LOST
    assert translate_error(reset).kind is TransportErrorKind.UNREACHABLE
    timeout = _raised_from(TimeoutError())
    assert translate_error(timeout, connected=True).kind is TransportErrorKind.TIMEOUT


# -- status payloads ------------------------------------------------------------------------


def test_status_payloads_round_trip() -> None:
    for gw in (
        GatewayStatus(GatewayState.ONLINE, at_ms=1_700_000_000_000),
        GatewayStatus(GatewayState.OFFLINE, OfflineCause.LOST),
        GatewayStatus(GatewayState.OFFLINE, OfflineCause.SHUTDOWN, 5),
    ):
        assert decode_gateway_status(encode_gateway_status(gw)) == gw
    for dev in (
        DeviceStatus(online=True, battery_pct=87, skin_contact=True, stalled=False, at_ms=1),
        DeviceStatus(online=False),
        DeviceStatus(online=True, skin_contact=False, stalled=True),
    ):
        assert decode_device_status(encode_device_status(dev)) == dev
    with pytest.raises(ValueError, match="battery"):
        DeviceStatus(online=True, battery_pct=101)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff", b"[]", b'{"v":2,"state":"online"}', b'{"v":1,"state":"gone"}',
     b'{"v":1,"state":"online","at_ms":"now"}', b'{"v":1,"state":"online","at_ms":true}'],
)  # fmt: skip
def test_status_decode_rejects(raw: bytes) -> None:
    with pytest.raises(StatusFormatError):
        decode_device_status(raw)
    with pytest.raises(StatusFormatError):
        decode_gateway_status(raw)


@pytest.mark.parametrize(
    "raw",
    [b'{"v":1,"state":"online","battery_pct":true}', b'{"v":1,"state":"online","battery_pct":101}',
     b'{"v":1,"state":"online","skin_contact":1}', b'{"v":1,"state":"online","stalled":"no"}'],
)  # fmt: skip
def test_device_status_decode_rejects(raw: bytes) -> None:
    with pytest.raises(StatusFormatError):
        decode_device_status(raw)


# -- backoff and the committer without a broker ---------------------------------------------


async def test_backs_off_on_an_unreachable_broker_and_still_commits(
    spool: Spool, namespace: Namespace
) -> None:
    """Nothing listens on the port: every attempt fails with ECONNREFUSED, the delays
    follow the policy (full jitter with the injected draw), and records the edge appends
    meanwhile are committed (durable) all the same."""
    endpoint = BrokerEndpoint("127.0.0.1", free_port(), "mosquitto")
    sleep = SignallingSleep(real=False, block_at=5)
    policy = BackoffPolicy(initial_s=1.0, max_s=8.0, stable_s=60.0)
    pub = publisher(spool, endpoint, namespace, backoff=policy, sleep=sleep, rand=lambda: 0.5)
    topic = TopicLayout(namespace.prefix).research(StreamKind.ECG)
    async with pub:
        seqs = Records(spool).append(topic, 3)
        pub.notify()
        await sleep.calls(5)
        stats = pub.stats()
        assert len(spool.pending(0, 10)) == len(seqs)  # committed
    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert stats.state is ConnectionState.WAITING
    assert stats.connect_failures == 5
    assert (stats.connects, stats.published) == (0, 0)
    assert stats.last_error is TransportErrorKind.UNREACHABLE
    assert pub.stats().state is ConnectionState.STOPPED


async def test_a_broker_that_never_answers(spool: Spool, namespace: Namespace) -> None:
    """TCP accepted, no CONNACK: the attempt times out (``timeout``); a stop during a
    connect attempt waits for it and leaves nothing open (warnings are errors here)."""
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    loop_errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    endpoint = BrokerEndpoint("127.0.0.1", server.sockets[0].getsockname()[1], "mosquitto")
    try:
        sleep = SignallingSleep(real=False, block_at=1)
        async with publisher(spool, endpoint, namespace, sleep=sleep, connect_timeout_s=0.2) as pub:
            await sleep.calls(1)
        assert pub.stats().last_error is TransportErrorKind.TIMEOUT
        accepted.clear()
        async with publisher(spool, endpoint, namespace, connect_timeout_s=0.2) as pub:
            await accepted.wait()  # stopped while waiting for the CONNACK
        assert pub.stats().connects == 0
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    for _ in range(20):  # let the callbacks of the closed connections run
        await asyncio.sleep(0)
    gc.collect()
    assert loop_errors == []


# -- against a broker -----------------------------------------------------------------------


async def test_delivers_in_seq_order_to_a_persistent_subscriber(
    broker: BrokerEndpoint, namespace: Namespace, spool: Spool
) -> None:
    layout = TopicLayout(namespace.prefix)
    topics = [layout.research(StreamKind.ECG), layout.clinical(DEVICE, StreamKind.RESP)]
    sub_filters = (layout.research_filter(), layout.clinical_filter())
    async with (
        subscribed(broker, namespace.client_id("sub"), *sub_filters) as sub,
        publisher(spool, broker, namespace) as pub,
    ):
        records, expected = Records(spool), []
        for i in range(10):  # 1000 records, notified in bursts, two topics interleaved
            expected += records.append(topics[i % 2], 100)
            pub.notify()
        got = await receive(sub, len(expected))
        await pub.wait_idle()
        stats = pub.stats()
    assert got == expected
    assert spool.pending(0, 10) == []
    assert (stats.published, stats.acked, stats.in_flight) == (1000, 1000, 0)
    assert (stats.connects, stats.reconnects, stats.abandoned) == (1, 0, 0)


async def test_gateway_status_online_then_offline_on_a_clean_stop(
    broker: BrokerEndpoint, namespace: Namespace, spool: Spool
) -> None:
    layout = TopicLayout(namespace.prefix)
    clock = iter(range(1000, 2000))
    async with subscribed(broker, namespace.client_id("st"), layout.status_filter()) as sub:
        async with publisher(spool, broker, namespace, wall_ms=lambda: next(clock)):
            online = await sub.get()
        offline = await sub.get()
    assert online.topic == offline.topic == layout.gateway_status(namespace.gateway_id)
    assert decode_gateway_status(online.payload) == GatewayStatus(GatewayState.ONLINE, at_ms=1000)
    assert decode_gateway_status(offline.payload) == GatewayStatus(
        GatewayState.OFFLINE, OfflineCause.SHUTDOWN, 1001
    )
    async with subscribed(broker, namespace.client_id("late"), layout.status_filter()) as late:
        retained = await late.get()
    assert retained.retain
    assert decode_gateway_status(retained.payload).cause is OfflineCause.SHUTDOWN


async def test_last_will_when_the_connection_breaks(
    broker: BrokerEndpoint, namespace: Namespace, spool: Spool
) -> None:
    """The network drops the publisher's connection (no DISCONNECT): the broker publishes
    the retained last will, "offline" with cause "lost"."""
    layout = TopicLayout(namespace.prefix)
    async with TcpProxy(broker) as proxy:
        sleep = SignallingSleep(real=True)
        pub = publisher(spool, proxy.endpoint(), namespace, backoff=FAST, sleep=sleep)
        async with (
            subscribed(broker, namespace.client_id("st"), layout.status_filter()) as sub,
            pub,
        ):
            assert decode_gateway_status((await sub.get()).payload).state == "online"
            proxy.abort()  # and refuse reconnects
            will = await sub.get()
            await sleep.calls(2)  # the second backoff follows a failed reconnect
    assert will.topic == layout.gateway_status(namespace.gateway_id)
    assert decode_gateway_status(will.payload) == GatewayStatus(
        GatewayState.OFFLINE, OfflineCause.LOST
    )
    assert pub.stats().connect_failures >= 1
    assert pub.stats().last_error is not None


async def test_rejected_record_is_counted_and_dropped_and_the_rest_flows(
    broker: BrokerEndpoint, namespace: Namespace, spool: Spool
) -> None:
    layout = TopicLayout(namespace.prefix)
    topic = layout.research(StreamKind.TEMP)
    async with (
        subscribed(broker, namespace.client_id("sub"), layout.research_filter()) as sub,
        publisher(spool, broker, namespace) as pub,
    ):
        records = Records(spool)
        first = records.append(topic, 2)
        records.append(f"{namespace.prefix}/research/+", 1)  # paho refuses wildcards
        last = records.append(topic, 2)
        pub.notify()
        got = await receive(sub, 4)
        await pub.wait_idle()
    assert got == first + last
    assert pub.stats().rejected == 1
    assert spool.pending(0, 10) == []


async def test_a_spool_error_stops_the_publisher_after_an_offline_status(
    broker: BrokerEndpoint, namespace: Namespace, tmp_path: Path
) -> None:
    """A spool error is not a transport error: ``run()`` raises it, and, being still
    connected, says "offline" first (the clean DISCONNECT would suppress the will)."""
    layout = TopicLayout(namespace.prefix)
    spool = Spool(tmp_path / "spool", max_bytes=1 << 24, sync="normal")
    pub = publisher(spool, broker, namespace)

    async def break_the_spool(sub: Subscriber) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(pub.run(), name="publisher")
            assert decode_gateway_status((await sub.get()).payload).state == "online"
            spool.close()  # every later spool call raises SpoolClosedError
            pub.notify()

    async with subscribed(broker, namespace.client_id("st"), layout.status_filter()) as sub:
        with pytest.raises(ExceptionGroup) as raised:
            await break_the_spool(sub)
        offline = decode_gateway_status((await sub.get()).payload)
    assert [type(e) for e in raised.value.exceptions] == [SpoolClosedError]  # unwrapped
    assert offline.cause is OfflineCause.SHUTDOWN
    assert pub.stats().state is ConnectionState.STOPPED


# -- outages (always an owned broker) --------------------------------------------------------


async def test_broker_outage_then_everything_once_in_order(
    owned_broker: MosquittoBroker, namespace: Namespace, spool: Spool
) -> None:
    """Stopped while idle, records appended during the outage, started again: the
    publisher reconnects after backing off and the subscriber gets every record exactly
    once, in order."""
    endpoint = owned_broker.endpoint
    layout = TopicLayout(namespace.prefix)
    topic = layout.research(StreamKind.ECG)
    sleep = SignallingSleep(real=True)
    async with subscribed(endpoint, namespace.client_id("sub"), layout.research_filter()) as sub:
        async with publisher(spool, endpoint, namespace, backoff=FAST, sleep=sleep) as pub:
            records = Records(spool)
            before = records.append(topic, 300)
            pub.notify()
            got = await receive(sub, 300)
            await pub.wait_idle()
            await sub.sync()
            owned_broker.stop()
            await sleep.calls(3)  # three failed attempts, backing off
            during = records.append(topic, 300)
            pub.notify()
            await eventually(lambda: len(spool.pending(0, 1000)) == 300, "committed while down")
            owned_broker.start()
            got += await receive(sub, 300)
            await pub.wait_idle()
            await sub.sync()
            stats = pub.stats()
        assert sub.queue.empty()
    assert got == before + during
    assert stats.reconnects == 1
    assert stats.connect_failures >= 2
    assert stats.acked == 600
    assert sub.connects >= 2


async def test_broker_outage_mid_stream_loses_nothing(
    owned_broker: MosquittoBroker, namespace: Namespace, spool: Spool
) -> None:
    """The broker stops while records stream in and are in flight: after it is back,
    every record arrives; first arrivals are in seq order; duplicates (at least once: a
    PUBACK lost with the connection) are bounded by what can be in flight."""
    endpoint = owned_broker.endpoint
    layout = TopicLayout(namespace.prefix)
    topic = layout.research(StreamKind.ACCEL)
    sleep = SignallingSleep(real=True)
    total, outage_at = 3000, 1000
    halfway = asyncio.Event()

    async def produce(pub: MqttPublisher) -> None:
        records = Records(spool)
        while len(produced) < total:
            produced.extend(records.append(topic, 25))
            pub.notify()
            if len(produced) >= outage_at:
                halfway.set()
            await asyncio.sleep(0.002)  # pacing: a stream, not a burst

    produced: list[int] = []
    async with (
        subscribed(endpoint, namespace.client_id("sub"), layout.research_filter()) as sub,
        publisher(spool, endpoint, namespace, backoff=FAST, sleep=sleep) as pub,
    ):
        async with asyncio.TaskGroup() as group:
            group.create_task(produce(pub), name="producer")
            await halfway.wait()
            owned_broker.stop()
            await sleep.calls(2)
            owned_broker.start()
        seen: list[int] = []
        while len(set(seen)) < total:
            seen.append(seq_of((await sub.get()).payload))
        await pub.wait_idle()
        stats = pub.stats()
    firsts = list(dict.fromkeys(seen))
    assert firsts == produced
    assert len(seen) - total <= 64 + 100  # publisher window + the broker's to the subscriber
    assert stats.reconnects == 1
    assert spool.pending(0, 10) == []


async def test_device_status_retained_republished_after_reconnect_and_forgotten(
    owned_broker: MosquittoBroker, namespace: Namespace, spool: Spool
) -> None:
    endpoint = owned_broker.endpoint
    layout = TopicLayout(namespace.prefix)
    device_topic = layout.device_status(namespace.gateway_id, DEVICE)
    status = DeviceStatus(online=True, battery_pct=80, skin_contact=False, at_ms=7)
    async with subscribed(endpoint, namespace.client_id("dev"), device_topic) as sub:
        pub = publisher(spool, endpoint, namespace, backoff=FAST)
        pub.set_device_status(DEVICE, status)  # before any connection
        async with pub:
            assert decode_device_status((await sub.get()).payload) == status
            owned_broker.stop()
            owned_broker.start()
            again = await sub.get()
            while again.retain:  # the subscriber's own re-subscribe gets the retained copy
                again = await sub.get()
            assert decode_device_status(again.payload) == status  # re-published live
            assert pub.stats().reconnects == 1
            pub.forget_device(DEVICE)
            while (message := await sub.get()).payload:  # copies of the status may precede
                assert decode_device_status(message.payload) == status
            # The empty retained message arrived: the broker has cleared the status.
    # Nothing retained any more: a marker subscribed after the device topic comes first.
    async with endpoint.client(namespace.client_id("probe")) as probe:
        await probe.publish(f"{namespace.prefix}/marker", b"m", qos=1, retain=True)
        await probe.subscribe(device_topic, qos=1)
        await probe.subscribe(f"{namespace.prefix}/marker", qos=1)
        first = await asyncio.wait_for(anext(aiter(probe.messages)), 10)
    assert str(first.topic) == f"{namespace.prefix}/marker"


async def test_restarted_gateway_replays_its_spool(
    owned_broker: MosquittoBroker, namespace: Namespace, tmp_path: Path
) -> None:
    """Records spooled while the broker was down survive the publisher and the spool being
    closed; a new publisher on the reopened spool delivers them in order."""
    endpoint = owned_broker.endpoint
    layout = TopicLayout(namespace.prefix)
    topic = layout.research(StreamKind.HR)
    directory = tmp_path / "spool"
    async with subscribed(endpoint, namespace.client_id("sub"), layout.research_filter()) as sub:
        with Spool(directory, max_bytes=1 << 24, sync="normal") as first:
            async with publisher(first, endpoint, namespace, backoff=FAST) as pub:
                await pub.wait_connected()
                owned_broker.stop()
                spooled = Records(first).append(topic, 200)
                pub.notify()
        owned_broker.start()
        with Spool(directory, max_bytes=1 << 24, sync="normal") as second:
            async with publisher(second, endpoint, namespace, backoff=FAST) as pub:
                got = await receive(sub, 200)
                await pub.wait_idle()
            assert second.pending(0, 10) == []
    assert got == spooled


# -- TLS and credentials (an owned Mosquitto) ------------------------------------------------


async def _deliver_or_fail(
    spool: Spool, settings: MqttSettings, gateway_id: str
) -> tuple[int, TransportErrorKind | None]:
    """Publish 20 records; (acked, last error) once idle or after a failed attempt."""
    sleep = SignallingSleep(real=False, block_at=1)
    pub = MqttPublisher(spool, settings=settings, gateway_id=gateway_id, sleep=sleep)
    Records(spool).append(TopicLayout(settings.topic_prefix).research(StreamKind.ECG), 20)
    async with pub:
        pub.notify()
        done = asyncio.ensure_future(pub.wait_idle())
        failed = asyncio.ensure_future(sleep.calls(1))
        await asyncio.wait({done, failed}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (done, failed):
            waiter.cancel()
    return pub.stats().acked, pub.stats().last_error


@needs_mosquitto
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_tls_with_the_configured_ca(tmp_path: Path, spool: Spool) -> None:
    """paho 2.2 does not close the socket of a failed TLS handshake
    (``Client._ssl_wrap_socket``); it is collected here, so its ResourceWarning is
    ignored in this test and cannot surface in a later one."""
    good = make_tls_files(tmp_path / "tls")
    other = make_tls_files(tmp_path / "other", common_name="someone-else")
    mosquitto = MosquittoBroker(tmp_path / "mq", tls=good)
    mosquitto.start()
    try:
        base = {"host": "127.0.0.1", "port": mosquitto.port, "tls": True, "topic_prefix": "t/v1"}
        trusted = MqttSettings(**base, ca_file=good.ca_cert)  # type: ignore[arg-type]
        assert await _deliver_or_fail(spool, trusted, "tlsok") == (20, None)
        untrusted = MqttSettings(**base, ca_file=other.ca_cert)  # type: ignore[arg-type]
        assert await _deliver_or_fail(spool, untrusted, "tlsbad") == (0, TransportErrorKind.TLS)
    finally:
        mosquitto.stop()
        gc.collect()


@pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="needs mosquitto")
async def test_credentials(tmp_path: Path, spool: Spool) -> None:
    mosquitto = MosquittoBroker(tmp_path / "mq", users={"gw": "right"})
    mosquitto.start()
    try:
        base = {"port": mosquitto.port, "username": "gw", "topic_prefix": "t/v1"}
        wrong = MqttSettings(**base, password=SecretStr("wrong"))  # type: ignore[arg-type]
        result = await _deliver_or_fail(spool, wrong, "authbad")
        assert result == (0, TransportErrorKind.NOT_AUTHORIZED)
        right = MqttSettings(**base, password=SecretStr("right"))  # type: ignore[arg-type]
        # Also the 20 records spooled during the refused attempt.
        assert await _deliver_or_fail(spool, right, "authok") == (40, None)
        assert spool.pending(0, 10) == []
    finally:
        mosquitto.stop()
