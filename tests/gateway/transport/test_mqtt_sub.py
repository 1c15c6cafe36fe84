"""The MQTT 5 subscriber connection against real, owned Mosquitto brokers (tests/brokers.py)
with Mosquitto's default settings (``max_inflight_messages`` 20): flow control by Receive
Maximum, redelivery of un-acked messages after a crash, shared subscriptions, keepalive,
refused subscriptions and broker outages.

Payloads are ``b"m%03d"`` so loss, duplicates and order are checked by number.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import MqttSettings
from gateway.transport.mqtt5_codec import encode_connect5
from gateway.transport.mqtt_client import TransportError, TransportErrorKind, client_options
from gateway.transport.mqtt_sub import (
    READ_CHUNK,
    Delivery,
    SubscriberConnection,
    SubscribeRefusedError,
    SubscriberOptions,
)
from tests.brokers import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    BrokerEndpoint,
    MosquittoBroker,
    TcpProxy,
    free_port,
    make_tls_files,
)

PAD = 2000
DYNSEC = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def _options(endpoint: BrokerEndpoint, client_id: str, **fields: object) -> SubscriberOptions:
    settings = MqttSettings(host=endpoint.host, port=endpoint.port, keepalive_s=5)
    base = SubscriberOptions.from_client_options(
        client_options(settings, gateway_id="sub"), client_id
    )
    return replace(base, **fields)  # type: ignore[arg-type]


async def _publish(
    endpoint: BrokerEndpoint, topic: str, numbers: range, qos: int = 1, pad: int = 0
) -> None:
    async with endpoint.client(f"pub-{secrets.token_hex(4)}") as client:
        for n in numbers:
            await client.publish(topic, b"m%03d" % n + bytes(pad), qos=qos)


async def _collect(conn: SubscriberConnection, n: int) -> list[Delivery]:
    """Deliveries until at least ``n`` came (a receive that times out fails the test)."""
    got: list[Delivery] = []
    while len(got) < n:
        batch = await conn.receive(30)
        assert batch, f"only {len(got)} of {n} deliveries arrived"
        got += batch
    return got


def _numbers(deliveries: Sequence[Delivery]) -> list[int]:
    return [int(d.payload[1:4]) for d in deliveries]


@asynccontextmanager
async def _running(
    options: SubscriberOptions, filters: Sequence[str] = ()
) -> AsyncIterator[tuple[SubscriberConnection, asyncio.Task[None]]]:
    """An open connection, subscribed to ``filters``, with ``run()`` as a task."""
    conn = await SubscriberConnection.open(options)
    try:
        if filters:
            await conn.subscribe(filters)
        task = asyncio.create_task(conn.run(), name=f"sub[{options.client_id}].run")
        try:
            yield conn, task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await conn.close()


def _topic() -> str:
    return f"biogwtest/{secrets.token_hex(5)}/t"


async def test_more_than_twenty_unacked_delivered_up_to_receive_maximum(
    owned_broker: MosquittoBroker,
) -> None:
    """Mosquitto's default ``max_inflight_messages`` (20) limits a 3.1.1 subscriber; a v5
    Receive Maximum of 50 gets 50 un-acked messages. After a PUBACK, Mosquitto 2.0.11
    overruns Receive Maximum; the connection then stops reading until acks make room,
    so it never holds more than 50 un-acked deliveries plus one read."""
    endpoint, topic = owned_broker.endpoint, _topic()
    bound = 50 + READ_CHUNK // PAD + 1
    async with _running(_options(endpoint, "rm", receive_maximum=50), [topic]) as (conn, _):
        await _publish(endpoint, topic, range(200), pad=PAD)
        first = await _collect(conn, 50)
        assert _numbers(first) == list(range(50))
        assert conn.in_flight == 50
        assert await conn.receive(0.5) == []  # nothing past 50 before any PUBACK
        got = list(first)
        conn.ack([d.packet_id for d in first[:10]])
        while len(got) < 200:
            batch = await conn.receive(0.5)
            assert conn.in_flight <= bound
            got += batch
            conn.ack([d.packet_id for d in batch])
            conn.ack([d.packet_id for d in got[10:50]])  # once: the rest are unknown
        assert _numbers(got) == list(range(200))
        assert conn.in_flight == 0
        await _publish(endpoint, topic, range(200, 201), qos=0)
        (qos0,) = await _collect(conn, 1)
        assert (qos0.payload[:4], qos0.packet_id, conn.in_flight) == (b"m200", 0, 0)


async def test_unacked_come_again_after_a_crash_acked_do_not(
    owned_broker: MosquittoBroker,
) -> None:
    endpoint, topic = owned_broker.endpoint, _topic()
    async with TcpProxy(endpoint) as proxy:
        options = _options(proxy.endpoint(), "crash", clean_start=True)
        async with _running(options, [topic]) as (conn, run):
            assert not conn.session_present
            await _publish(endpoint, topic, range(10))
            got = await _collect(conn, 10)
            conn.ack([d.packet_id for d in got[:4]])
            await conn.subscribe([f"{topic}/sync"])  # the broker has taken the PUBACKs
            proxy.abort()  # a crash: no DISCONNECT
            with pytest.raises(TransportError) as raised:
                await run
            assert raised.value.kind is TransportErrorKind.CONNECTION_LOST
            with pytest.raises(TransportError):
                await conn.receive(0)
    options = _options(endpoint, "crash")
    async with _running(options) as (again, _):
        assert again.session_present
        await _publish(endpoint, topic, range(10, 11))
        redelivered = await _collect(again, 7)
    assert _numbers(redelivered) == [4, 5, 6, 7, 8, 9, 10]
    assert [d.dup for d in redelivered] == [True] * 6 + [False]


async def test_shared_subscription_splits_without_loss_or_duplicates(
    owned_broker: MosquittoBroker,
) -> None:
    endpoint, topic = owned_broker.endpoint, _topic()
    shared = [f"$share/g/{topic}"]
    got: dict[str, list[int]] = {"a": [], "b": []}

    async def take(conn: SubscriberConnection, name: str) -> None:
        while len(got["a"]) + len(got["b"]) < 100:
            batch = await conn.receive(0.1)
            got[name] += _numbers(batch)
            conn.ack([d.packet_id for d in batch])

    async with (
        _running(_options(endpoint, "share-a"), shared) as (a, _),
        _running(_options(endpoint, "share-b"), shared) as (b, _),
    ):
        await _publish(endpoint, topic, range(100))
        async with asyncio.timeout(30):
            await asyncio.gather(take(a, "a"), take(b, "b"))
    assert sorted(got["a"] + got["b"]) == list(range(100))
    assert got["a"]
    assert got["b"]
    assert got["a"] == sorted(got["a"])
    assert got["b"] == sorted(got["b"])


async def test_keepalive_holds_an_idle_connection(owned_broker: MosquittoBroker) -> None:
    """Keepalive 1 s: the broker drops a client silent for 1.5 s (Mosquitto checks every
    few seconds). A raw client that never pings is dropped; meanwhile the idle connection
    whose ``run()`` goes pings and survives."""
    endpoint, topic = owned_broker.endpoint, _topic()
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    writer.write(encode_connect5("silent", keepalive_s=1, clean_start=True,
                                 session_expiry_s=0, receive_maximum=10))  # fmt: skip
    try:
        async with _running(_options(endpoint, "alive", keepalive_s=1), [topic]) as (conn, run):
            async with asyncio.timeout(60):
                while await reader.read(1024):  # the CONNACK, then the drop
                    pass
            assert conn.pingresps >= 2
            assert not run.done()
            await _publish(endpoint, topic, range(1))
            assert _numbers(await _collect(conn, 1)) == [0]
            assert not run.done()
    finally:
        writer.close()


async def test_acks_then_cancel_and_close_reach_the_broker(
    owned_broker: MosquittoBroker,
) -> None:
    """The caller acks, cancels ``run()`` (which only stops reading: acks still work) and
    closes: the PUBACKs and a DISCONNECT reach the broker, which logs a clean disconnect,
    and the persistent session gets only the un-acked messages again."""
    endpoint, topic = owned_broker.endpoint, _topic()
    conn = await SubscriberConnection.open(
        _options(endpoint, "graceful", clean_start=True, receive_maximum=10)
    )
    try:
        await conn.subscribe([topic])
        run = asyncio.create_task(conn.run())
        await _publish(endpoint, topic, range(30))
        got = await _collect(conn, 10)
        conn.ack([d.packet_id for d in got[:3]])
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        conn.ack([d.packet_id for d in got[3:7]])
    finally:
        await conn.close()
    with pytest.raises(TransportError):
        conn.ack([got[7].packet_id])
    with pytest.raises(TransportError):
        await conn.receive(0)
    async with _running(_options(endpoint, "graceful", receive_maximum=100)) as (again, _):
        assert again.session_present
        redelivered = await _collect(again, 23)
    assert _numbers(redelivered) == list(range(7, 30))
    log = owned_broker.log()
    assert "Client graceful disconnected." in log
    assert "graceful closed its connection" not in log
    assert "graceful already connected" not in log


async def test_keepalive_while_reading_is_paused(owned_broker: MosquittoBroker) -> None:
    """Keepalive 5 s, Receive Maximum 5: after a PUBACK Mosquitto 2.0.11 overruns it, so
    reading pauses. Nothing is acked for 25 s (Mosquitto 2.0.11 drops a client silent for
    1.5 x keepalive, but checks coarsely: ~15 s here); PINGREQs go on meanwhile, so the
    broker keeps the link: acks then work and the rest arrive."""
    endpoint, topic = owned_broker.endpoint, _topic()
    options = _options(endpoint, "paused", keepalive_s=5, receive_maximum=5)
    async with _running(options, [topic]) as (conn, run):
        await _publish(endpoint, topic, range(40))
        got = await _collect(conn, 5)
        conn.ack([got[0].packet_id])
        got += await _collect(conn, 7 - len(got))  # 6 un-acked: more than Receive Maximum
        assert conn.in_flight > 5
        assert conn.overruns == 1
        pings = conn.pingreqs
        while conn.pingreqs < pings + 10:  # one PINGREQ per half keepalive (2.5 s)
            await asyncio.sleep(0.5)
            assert not run.done()
        assert conn.in_flight > 5
        assert conn.overruns == 1  # reading stayed paused throughout
        conn.ack([d.packet_id for d in got[1:]])
        while len(got) < 40:
            batch = await conn.receive(30)
            assert batch, f"only {len(got)} of 40 deliveries arrived"
            conn.ack([d.packet_id for d in batch])
            got += batch
        assert not run.done()
    assert _numbers(got) == list(range(40))
    assert "paused has exceeded timeout" not in owned_broker.log()


@pytest.mark.skipif(MOSQUITTO is None or not DYNSEC.exists(), reason="needs mosquitto dynsec")
async def test_refused_subscription_names_the_reason_code(tmp_path: Path) -> None:
    """Mosquitto 2.0's ``acl_file`` never refuses a SUBSCRIBE (it filters deliveries); the
    dynamic security plugin does: anonymous clients may subscribe to ``ok/#`` only."""
    dynsec = tmp_path / "dynsec.json"
    reader = {"acltype": "subscribePattern", "topic": "ok/#", "allow": True}
    dynsec.write_text(
        json.dumps(
            {
                "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                                     "subscribe": False, "unsubscribe": True},
                "clients": [],
                "groups": [{"groupname": "anon", "roles": [{"rolename": "reader"}]}],
                "roles": [{"rolename": "reader", "acls": [reader]}],
                "anonymousGroup": "anon",
            }
        )
    )  # fmt: skip
    broker = MosquittoBroker(
        tmp_path / "mosquitto",
        extra_config=[f"plugin {DYNSEC}", f"plugin_opt_config_file {dynsec}"],
    )
    broker.start()
    try:
        async with _running(_options(broker.endpoint, "refused")) as (conn, _):
            with pytest.raises(SubscribeRefusedError) as raised:
                await conn.subscribe(["ok/a", "secret/subject-1"])
            assert raised.value.reason_code == 0x87
            assert "0x87" in str(raised.value)
            assert "secret" not in str(raised.value)
            await conn.subscribe(["ok/b"])  # the connection is still usable
    finally:
        broker.stop()


async def test_broker_stop_ends_run_receive_and_ack(owned_broker: MosquittoBroker) -> None:
    endpoint, topic = owned_broker.endpoint, _topic()
    async with _running(_options(endpoint, "stop"), [topic]) as (conn, run):
        await _publish(endpoint, topic, range(1))
        (delivery,) = await _collect(conn, 1)
        waiting = asyncio.create_task(conn.receive(None))
        await asyncio.to_thread(owned_broker.stop)
        with pytest.raises(TransportError) as raised:
            await run
        assert raised.value.kind is TransportErrorKind.CONNECTION_LOST
        with pytest.raises(TransportError):
            await waiting
        with pytest.raises(TransportError):
            conn.ack([delivery.packet_id])


async def test_open_failures_are_transport_errors(tmp_path: Path) -> None:
    nothing = BrokerEndpoint("127.0.0.1", free_port(), "mosquitto")
    with pytest.raises(TransportError) as raised:
        await SubscriberConnection.open(_options(nothing, "x"))
    assert raised.value.kind is TransportErrorKind.UNREACHABLE
    if MOSQUITTO_PASSWD is None:
        return
    broker = MosquittoBroker(tmp_path / "mosquitto", users={"u": "right"})
    broker.start()
    try:
        wrong = _options(broker.endpoint, "x", username="u", password="wrong")
        with pytest.raises(TransportError) as raised:
            await SubscriberConnection.open(wrong)
        assert (raised.value.kind, raised.value.code) == (TransportErrorKind.NOT_AUTHORIZED, 0x87)
        async with _running(replace(wrong, password="right"), ["a/#"]) as (conn, _):
            assert conn.in_flight == 0
    finally:
        broker.stop()


async def test_deliveries_before_the_suback_are_kept(owned_broker: MosquittoBroker) -> None:
    """Queued messages of a persistent session arrive with the CONNACK, before any
    SUBACK; none is lost to a SUBSCRIBE that reads the stream itself."""
    endpoint, topic = owned_broker.endpoint, _topic()
    async with _running(_options(endpoint, "queued", clean_start=True), [topic]):
        pass
    await _publish(endpoint, topic, range(30))
    conn = await SubscriberConnection.open(_options(endpoint, "queued"))
    try:
        assert conn.session_present
        await conn.subscribe([f"{topic}/other"])
        task = asyncio.create_task(conn.run())
        got = await _collect(conn, 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await conn.close()
    assert _numbers(got) == list(range(30))


@pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto")
async def test_tls_from_client_options(tmp_path: Path) -> None:
    """TLS as the publisher's ``ClientOptions`` configure it: the configured CA is
    trusted, another is a ``tls`` error, unreadable files are one at build time."""
    good = make_tls_files(tmp_path / "tls")
    other = make_tls_files(tmp_path / "other", common_name="someone-else")
    broker = MosquittoBroker(tmp_path / "mosquitto", tls=good)
    broker.start()
    try:

        def options(ca: Path) -> SubscriberOptions:
            settings = MqttSettings(host="127.0.0.1", port=broker.port, tls=True, ca_file=ca)
            return SubscriberOptions.from_client_options(
                client_options(settings, gateway_id="tls"), "tls-sub"
            )

        async with _running(options(good.ca_cert), ["a/#"]) as (conn, run):
            assert not conn.session_present
            assert not run.done()
        with pytest.raises(TransportError) as raised:
            await SubscriberConnection.open(options(other.ca_cert))
        assert raised.value.kind is TransportErrorKind.TLS
        with pytest.raises(TransportError) as raised:
            options(tmp_path / "missing.pem")
        assert raised.value.kind is TransportErrorKind.TLS
    finally:
        broker.stop()
