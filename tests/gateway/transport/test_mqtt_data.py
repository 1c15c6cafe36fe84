"""The data connection against a scripted fake broker (a real TCP server speaking just
enough MQTT 3.1.1): faults Mosquitto cannot be made to produce on demand -- refused
CONNACKs, unanswered PINGREQs, garbage, withheld PUBACKs. The happy path against real
brokers is in test_mqtt.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import pytest
from pydantic import SecretStr

from gateway.config import MqttSettings
from gateway.transport.mqtt_client import (
    ClientOptions,
    TransportError,
    TransportErrorKind,
    client_options,
)
from gateway.transport.mqtt_codec import (
    InvalidPublishError,
    decode_remaining_length,
)
from gateway.transport.mqtt_data import DataConnection, DataRecord


@dataclass(frozen=True, slots=True)
class Rec:
    seq: int
    topic: str
    payload: bytes


@dataclass
class FakeBroker:
    """Accepts one client at a time; every packet the client sends goes to ``packets``
    as (first byte, body). Scripted: CONNACK return code, PUBACKs (except for the ids in
    ``withhold``), PINGRESPs, bytes sent right after the CONNACK."""

    return_code: int = 0
    pingresp: bool = True
    withhold: set[int] = field(default_factory=set)
    after_connack: bytes = b""
    close_after_connack: bool = False
    packets: asyncio.Queue[tuple[int, bytes]] = field(default_factory=asyncio.Queue)
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    handlers: list[asyncio.Task[None]] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        try:
            while True:
                first, body = await _read_packet(reader)
                self.packets.put_nowait((first, body))
                reply = self._reply(first, body)
                if reply is None:
                    break
                writer.write(reply)
                if first == 0x10 and (self.return_code or self.close_after_connack):
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    def _reply(self, first: int, body: bytes) -> bytes | None:
        if first == 0x10:
            return bytes((0x20, 2, 0, self.return_code)) + self.after_connack
        if first & 0xF0 == 0x30:
            n = int.from_bytes(body[:2], "big")
            packet_id = int.from_bytes(body[2 + n : 4 + n], "big")
            return b"" if packet_id in self.withhold else b"\x40\x02" + body[2 + n : 4 + n]
        if first == 0xC0:
            return b"\xd0\x00" if self.pingresp else b""
        return None  # DISCONNECT (or anything else): hang up

    async def next(self, first: int) -> bytes:
        """The body of the next packet, which must be of type ``first``."""
        got, body = await asyncio.wait_for(self.packets.get(), 30)
        assert got == first, f"expected {first:#x}, got {got:#x}"
        return body


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(2)
    raw = bytearray(header)
    while (parsed := decode_remaining_length(raw, 1)) is None:
        raw += await reader.readexactly(1)
    length, _ = parsed
    return raw[0], await reader.readexactly(length)


@asynccontextmanager
async def running(broker: FakeBroker) -> AsyncIterator[FakeBroker]:
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    broker.port = server.sockets[0].getsockname()[1]
    try:
        yield broker
    finally:
        server.close()
        for writer in broker.writers:
            writer.close()
        await asyncio.gather(*broker.handlers, return_exceptions=True)
        await server.wait_closed()


def options(broker: FakeBroker, **fields: object) -> ClientOptions:
    settings = MqttSettings(host="127.0.0.1", port=broker.port, **fields)  # type: ignore[arg-type]
    return client_options(settings, gateway_id="gw1")


def _publish_body(topic: str, packet_id: int, payload: bytes) -> bytes:
    return len(topic).to_bytes(2, "big") + topic.encode() + packet_id.to_bytes(2, "big") + payload


async def test_connect_publish_in_order_acks_map_to_seqs_then_disconnect() -> None:
    async with running(FakeBroker()) as broker:
        woken = asyncio.Event()
        opts = options(broker, username="u", password=SecretStr("pw"), keepalive_s=17)
        data = await DataConnection.open(opts, wake=woken.set)
        connect = await broker.next(0x10)
        assert connect[7] == 0xC0  # user name + password, clean session off: persistent
        assert connect[8:10] == (17).to_bytes(2, "big")
        assert connect[10:26] == b"\x00\x0ebiogw-gw1-data"
        assert connect[26:] == b"\x00\x01u\x00\x02pw"
        rejected: list[tuple[int, str]] = []

        def reject(record: DataRecord, exc: InvalidPublishError) -> None:
            rejected.append((record.seq, exc.reason))

        records = [
            Rec(11, "a/b", b"x"),
            Rec(12, "a/+", b"y"),
            Rec(14, "a/b", b""),
            Rec(15, "c", b"z"),
        ]
        assert data.publish(records, reject) == 3
        assert rejected == [(12, "topic_wildcard")]
        assert data.in_flight == 3
        for packet_id, rec in zip((1, 2, 3), (records[0], records[2], records[3]), strict=True):
            assert await broker.next(0x32) == _publish_body(rec.topic, packet_id, rec.payload)
        async with asyncio.TaskGroup() as group:
            reading = group.create_task(data.receive())
            while len(data.acked) < 3:
                await woken.wait()
                woken.clear()
            reading.cancel()
        assert (data.acked, data.in_flight) == ([11, 14, 15], 0)
        await data.close()
        assert await broker.next(0xE0) == b""


@pytest.mark.parametrize(
    ("code", "kind"), [(5, "not_authorized"), (4, "not_authorized"), (2, "refused"), (3, "refused")]
)
async def test_refused_connack(code: int, kind: str) -> None:
    async with running(FakeBroker(return_code=code)) as broker:
        with pytest.raises(TransportError) as raised:
            await DataConnection.open(options(broker), wake=lambda: None)
    assert (raised.value.kind, raised.value.code) == (TransportErrorKind(kind), code)


async def test_nothing_listening_is_unreachable() -> None:
    async with running(FakeBroker()) as broker:
        opts = options(broker)
    with pytest.raises(TransportError) as raised:
        await DataConnection.open(opts, wake=lambda: None)
    assert raised.value.kind is TransportErrorKind.UNREACHABLE


@pytest.mark.parametrize(
    ("script", "kind"),
    [({"after_connack": b"\x30\x00"}, "protocol"),  # a PUBLISH: nothing was subscribed
     ({"after_connack": b"\x20\x02\x00\x00"}, "protocol"),  # a second CONNACK
     ({"close_after_connack": True}, "connection_lost")],
)  # fmt: skip
async def test_broker_faults_end_the_connection(script: dict[str, object], kind: str) -> None:
    async with running(FakeBroker(**script)) as broker:  # type: ignore[arg-type]
        with pytest.raises(TransportError) as raised:  # at the CONNACK or after it
            await _open_and_receive(broker)
    assert raised.value.kind is TransportErrorKind(kind)


async def _open_and_receive(broker: FakeBroker) -> None:
    data = await DataConnection.open(options(broker), wake=lambda: None)
    try:
        await data.receive()
    finally:
        await data.close()


async def test_keepalive_pings_when_idle_and_gives_up_without_pingresp() -> None:
    """keepalive 1 s: an idle connection sends PINGREQ every tick while PINGRESPs come;
    when one does not come by the next tick the connection is lost."""
    async with running(FakeBroker()) as broker:
        opts = options(broker)
        data = await DataConnection.open(replace(opts, keepalive=1), wake=lambda: None)
        await broker.next(0x10)

        async def script() -> None:
            await broker.next(0xC0)
            await broker.next(0xC0)  # the first was answered: still alive, pinging again
            broker.pingresp = False

        async with asyncio.TaskGroup() as group:
            reading = group.create_task(data.receive())
            group.create_task(script())
            with pytest.raises(TransportError) as raised:
                await data.keepalive()
            reading.cancel()
        assert broker.packets.get_nowait()[0] == 0xC0  # the unanswered one
        await data.close()
    assert raised.value.kind is TransportErrorKind.CONNECTION_LOST


async def test_packet_ids_wrap_and_skip_ids_still_in_flight() -> None:
    async with running(FakeBroker(withhold={1})) as broker:
        woken = asyncio.Event()
        data = await DataConnection.open(options(broker), wake=woken.set)
        async with asyncio.TaskGroup() as group:
            reading = group.create_task(data.receive())
            records = [Rec(seq, "t", b"") for seq in range(1, 65_536)]
            assert data.publish(records, lambda r, e: None) == 65_535
            while len(data.acked) < 65_534:
                await woken.wait()
                woken.clear()
            assert data.in_flight == 1  # packet id 1 (seq 1) never acked
            broker.withhold = set()
            more = [Rec(70_000, "t", b""), Rec(70_001, "t", b"")]
            assert data.publish(more, lambda r, e: None) == 2
            while len(data.acked) < 65_536:
                await woken.wait()
                woken.clear()
            reading.cancel()
        await data.close()
        sent = [broker.packets.get_nowait() for _ in range(broker.packets.qsize())]
    last_two = [body for first, body in sent if first == 0x32][-2:]
    assert last_two == [_publish_body("t", i, b"") for i in (2, 3)]
    assert data.acked[-2:] == [70_000, 70_001]  # ids 2 and 3: 1 was still taken
    assert data.in_flight == 1
