"""MQTT brokers and small MQTT tools for the tests.

Which broker: ``BIOGW_TEST_MQTT=host:port`` names one (CI may set it to the machine's
Mosquitto; it is never stopped, and every test uses its own topic prefix and client ids,
cleaned up afterwards). Otherwise the tests own one: the ``mosquitto`` binary (own
config, a free port, persistence in a temp dir so queued QoS 1 messages for persistent
sessions survive ``stop()``/``start()`` on the same port). Without either, broker tests
skip. There is no embedded Python fallback: amqtt 0.12.1 was evaluated and rejected
(docs/transport.md, Test brokers). Outage tests always use an owned Mosquitto
(``MosquittoBroker``), never the machine's.

Also here: ``Subscriber`` (a persistent QoS 1 subscriber that reconnects through
outages and collects messages into a queue), ``TcpProxy`` (to break a client's
connection without a DISCONNECT) and ``make_tls_files`` (a throwaway CA and server
certificate for a TLS listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import aiomqtt
from pydantic import SecretStr

from gateway.config import MqttSettings
from gateway.transport.broker import MOSQUITTO as MOSQUITTO
from gateway.transport.broker import LocalBroker
from gateway.transport.broker import free_port as free_port

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
READY_TIMEOUT_S = 10.0

BrokerKind = Literal["configured", "mosquitto"]


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where a broker listens and how test clients log in to it."""

    host: str
    port: int
    kind: BrokerKind
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def settings(self, *, topic_prefix: str, **overrides: Any) -> MqttSettings:
        """``MqttSettings`` for this broker (``overrides`` win)."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": SecretStr(self.password) if self.password else None,
            "topic_prefix": topic_prefix,
            "keepalive_s": 5,
        }
        values.update(overrides)
        return MqttSettings(**values)

    def client(self, identifier: str, *, clean_session: bool = True) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=identifier,
            username=self.username,
            password=self.password,
            clean_session=clean_session,
            keepalive=5,
        )


class OwnedBroker(Protocol):
    endpoint: BrokerEndpoint

    def start(self) -> None: ...
    def stop(self) -> None: ...


def configured_endpoint() -> BrokerEndpoint | None:
    """The broker named by ``BIOGW_TEST_MQTT=host:port``, if set."""
    value = os.environ.get("BIOGW_TEST_MQTT")
    if not value:
        return None
    host, _, port = value.rpartition(":")
    return BrokerEndpoint(host or "127.0.0.1", int(port), "configured")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


class MosquittoBroker(LocalBroker):
    """A Mosquitto process this test owns (``gateway.transport.broker.LocalBroker`` with
    Mosquitto's default in-flight limit, as a stock broker has): ``start()``, ``stop()``
    (SIGTERM, state saved), ``start()`` again on the same port with the same persistence
    directory. Optionally TLS, password logins and an ACL file."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
        acl_file: Path | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        lines: list[str] = []
        if tls is not None:
            lines += [
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
            ]
        if users:
            passwd = _password_file(workdir, users)
            lines += [f"password_file {passwd}", "allow_anonymous false"]
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
        super().__init__(workdir, max_inflight_messages=None, extra_config=[*lines, *extra_config])
        self.endpoint = BrokerEndpoint("127.0.0.1", self.port, "mosquitto")


def _password_file(workdir: Path, users: dict[str, str]) -> Path:
    if MOSQUITTO_PASSWD is None:
        raise RuntimeError("no mosquitto_passwd binary")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "passwd"
    path.touch(mode=0o600)
    for user, password in users.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(path), user, password], check=True)
    return path


# -- clients ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """A persistent (``clean_session=False``) QoS 1 subscriber that reconnects after a
    broker outage and puts every message into ``queue``. ``connected`` is set while a
    connection with its subscriptions is up."""

    def __init__(self, endpoint: BrokerEndpoint, identifier: str, *filters: str) -> None:
        self._endpoint = endpoint
        self._identifier = identifier
        self._filters = filters
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.connects = 0
        self._client: aiomqtt.Client | None = None

    async def run(self) -> None:
        while True:
            try:
                async with self._endpoint.client(self._identifier, clean_session=False) as c:
                    for topic_filter in self._filters:
                        await c.subscribe(topic_filter, qos=1)
                    self.connects += 1
                    self._client = c
                    self.connected.set()
                    async for m in c.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else b""
                        self.queue.put_nowait(Received(str(m.topic), payload, m.retain))
            except aiomqtt.MqttError:
                self.connected.clear()
                self._client = None
                await asyncio.sleep(0.05)  # reconnect pacing while the broker is down

    async def get(self, timeout_s: float = 30.0) -> Received:
        return await asyncio.wait_for(self.queue.get(), timeout_s)

    async def sync(self) -> None:
        """A SUBSCRIBE round trip on a topic with nothing retained: once it returns, the
        broker has processed every PUBACK this subscriber sent before it."""
        await asyncio.wait_for(self.connected.wait(), 30)
        assert self._client is not None
        await self._client.subscribe(f"biogw-test-sync/{self._identifier}", qos=1)


@contextlib.asynccontextmanager
async def subscribed(
    endpoint: BrokerEndpoint, identifier: str, *filters: str
) -> AsyncIterator[Subscriber]:
    """A running ``Subscriber``, connected and subscribed on entry."""
    sub = Subscriber(endpoint, identifier, *filters)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(sub.run(), name=f"subscriber[{identifier}]")
        try:
            await asyncio.wait_for(sub.connected.wait(), 30)
            yield sub
        finally:
            task.cancel()


async def forget_session(endpoint: BrokerEndpoint, identifier: str) -> None:
    """Delete a persistent session from the broker (connect once with a clean session)."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with endpoint.client(identifier, clean_session=True):
            pass


async def clear_retained(endpoint: BrokerEndpoint, topics: list[str]) -> None:
    with contextlib.suppress(aiomqtt.MqttError):
        async with endpoint.client(f"biogw-test-clean-{os.getpid()}") as c:
            for topic in topics:
                await c.publish(topic, b"", qos=1, retain=True)


class TcpProxy:
    """A TCP relay in front of a broker; ``abort()`` drops every relayed connection at
    once (as a network failure would) and refuses new ones from then on."""

    def __init__(self, target: BrokerEndpoint) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepting = True
        self.port = 0

    def endpoint(self) -> BrokerEndpoint:
        return BrokerEndpoint(
            "127.0.0.1", self.port, self._target.kind, self._target.username, self._target.password
        )

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def abort(self) -> None:
        """Reset every relayed connection and stop listening (new connects are refused)."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self._target.host, self._target.port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        async with asyncio.TaskGroup() as group:
            group.create_task(_pipe(reader, up_writer), name="proxy.up")
            group.create_task(_pipe(up_reader, writer), name="proxy.down")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


# -- TLS material -------------------------------------------------------------------------


def make_tls_files(directory: Path, *, common_name: str = "biogw-test-ca") -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
