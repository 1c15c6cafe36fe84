"""MQTT connection arguments and transport errors (docs/transport.md §2, §5).

Role: ``client_options`` turns ``MqttSettings`` into ``ClientOptions`` (pure): what the
control connection's ``aiomqtt.Client`` and the data connection (``mqtt_data``) are built
from -- host, port, client ids, keepalive, credentials, TLS. ``translate_error`` is the
one place errors of aiomqtt/paho, of sockets and TLS, and of the MQTT codec become a
``TransportError`` of a ``TransportErrorKind``.

Must not: open connections (``ClientOptions.client()`` only builds an unconnected client;
``ssl_context()`` reads the configured TLS files), log credentials, topics or payloads.
"""

from __future__ import annotations

import enum
import logging
import socket
import ssl
from dataclasses import dataclass, field
from typing import Final

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_ERR_NO_CONN

from devices.errors import BiogwError
from gateway.config import MqttSettings
from gateway.errors import ConfigError
from gateway.transport.mqtt_codec import MqttCodecError
from gateway.transport.status import (
    GatewayState,
    GatewayStatus,
    OfflineCause,
    encode_gateway_status,
)
from gateway.transport.topics import TopicLayout

__all__ = [
    "CONNECT_TIMEOUT_S",
    "STATUS_PENDING",
    "ClientOptions",
    "ConnackRefusedError",
    "TransportError",
    "TransportErrorKind",
    "client_options",
    "translate_error",
]

_PAHO_LOG: Final = logging.getLogger("gateway.transport.mqtt.paho")
"""paho logs topics at DEBUG only."""

CONNECT_TIMEOUT_S: Final = 10.0
STATUS_PENDING: Final = 4096
"""Status publishes (one per device) in flight before aiomqtt starts warning."""
_AUTH_CODES: Final = frozenset({4, 5, 134, 135, 140})
"""CONNACK refusals meaning "who you are": 3.1.1 codes 4 and 5, and the MQTT 5 reason
codes paho maps them to (0x86 bad user name or password, 0x87 not authorized, 0x8C bad
authentication method)."""


class TransportErrorKind(enum.StrEnum):
    UNREACHABLE = "unreachable"
    """No TCP connection (refused, no route, name not resolved)."""
    TIMEOUT = "timeout"
    TLS = "tls"
    """Handshake or certificate verification failed, or TLS files unreadable."""
    NOT_AUTHORIZED = "not_authorized"
    REFUSED = "refused"
    """Any other negative CONNACK."""
    CONNECTION_LOST = "connection_lost"
    PUBLISH_FAILED = "publish_failed"
    PROTOCOL = "protocol"
    """Anything else aiomqtt, paho or the broker's byte stream reported."""


class TransportError(BiogwError):
    """The broker connection failed or ended. ``kind`` classifies it; ``code`` is the
    MQTT, paho or errno code when there is one. No topic or payload is kept."""

    def __init__(self, kind: TransportErrorKind, code: int | None = None) -> None:
        self.kind = kind
        self.code = code
        super().__init__(f"mqtt: {kind}" + (f" (code {code})" if code is not None else ""))


class ConnackRefusedError(BiogwError):
    """The data connection's CONNACK carried a non-zero return code (3.1.1)."""

    def __init__(self, return_code: int) -> None:
        self.return_code = return_code
        super().__init__(f"CONNACK refused: return code {return_code}")


def _code(rc: object) -> int | None:
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


def _refused(code: int | None) -> TransportError:
    kind = TransportErrorKind.NOT_AUTHORIZED if code in _AUTH_CODES else None
    return TransportError(kind or TransportErrorKind.REFUSED, code)


def translate_error(exc: BaseException, *, connected: bool = False) -> TransportError:
    """The one place transport errors become ``TransportError``; ``connected`` says
    whether the connection had been up (then a socket error means it was lost).

    ``exc`` is an ``aiomqtt.MqttError`` (aiomqtt raises connect failures ``from None``
    but keeps the original as ``__context__``), or, from the data connection, an
    ``OSError``/``TimeoutError``/``ssl`` error, an ``asyncio.IncompleteReadError`` (an
    ``EOFError``), a ``ConnackRefusedError`` or a codec error."""
    if isinstance(exc, MqttConnectError):
        return _refused(_code(exc.rc))
    if isinstance(exc, ConnackRefusedError):
        return _refused(exc.return_code)
    if isinstance(exc, MqttCodecError):
        return TransportError(TransportErrorKind.PROTOCOL)
    if isinstance(exc, aiomqtt.MqttCodeError):
        code = _code(exc.rc)
        if code == MQTT_ERR_NO_CONN or exc.__cause__ is not None:
            return TransportError(TransportErrorKind.CONNECTION_LOST, code)
        return TransportError(TransportErrorKind.PUBLISH_FAILED, code)
    origin: BaseException | None = exc
    if isinstance(exc, aiomqtt.MqttError):
        origin = exc.__cause__ or exc.__context__
    if connected and not isinstance(origin, TimeoutError):
        return TransportError(
            TransportErrorKind.CONNECTION_LOST, _code(getattr(origin, "rc", None))
        )
    if isinstance(origin, ssl.SSLError | ssl.CertificateError):
        return TransportError(TransportErrorKind.TLS)
    if isinstance(origin, FileNotFoundError | PermissionError | IsADirectoryError):
        return TransportError(TransportErrorKind.TLS)  # only TLS setup reads files
    if isinstance(origin, TimeoutError):
        return TransportError(TransportErrorKind.TIMEOUT)
    if isinstance(origin, OSError):
        return TransportError(TransportErrorKind.UNREACHABLE, origin.errno)
    if isinstance(origin, EOFError):  # closed before the CONNACK
        return TransportError(TransportErrorKind.REFUSED)
    return TransportError(TransportErrorKind.PROTOCOL)


# -- connection arguments -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything both connections are built from (pure; ``client()`` builds the control
    connection's client, ``mqtt_data.DataConnection.open`` the data connection)."""

    hostname: str
    port: int
    identifier: str
    keepalive: int
    will: aiomqtt.Will
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_params: aiomqtt.TLSParameters | None = None
    clean_session: bool = False
    timeout_s: float = CONNECT_TIMEOUT_S

    @property
    def data_identifier(self) -> str:
        """The data connection's client id: the control connection's plus ``-data``."""
        return f"{self.identifier}-data"

    def client(self) -> aiomqtt.Client:
        """A new client (call inside the running loop; one per connection attempt)."""
        client = aiomqtt.Client(
            self.hostname,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V311,
            will=self.will,
            clean_session=self.clean_session,
            keepalive=self.keepalive,
            timeout=self.timeout_s,
            max_inflight_messages=0,  # unbounded in paho: only status goes through it
            tls_params=self.tls_params,
            logger=_PAHO_LOG,
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # aiomqtt warns per call past this many pending; only status goes through it.
        client.pending_calls_threshold = STATUS_PENDING
        return client

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for the data connection, built as paho builds it from
        ``tls_params`` (``Client.tls_set``), or None without TLS. Reads the files: raises
        ``OSError``/``ssl.SSLError`` (``translate_error`` makes both ``tls``)."""
        tls = self.tls_params
        if tls is None:
            return None
        context = ssl.SSLContext(tls.tls_version or ssl.PROTOCOL_TLS_CLIENT)
        if tls.ciphers is not None:
            context.set_ciphers(tls.ciphers)
        if tls.certfile is not None:
            context.load_cert_chain(tls.certfile, tls.keyfile, tls.keyfile_password)
        reqs = ssl.CERT_REQUIRED if tls.cert_reqs is None else tls.cert_reqs
        if reqs == ssl.CERT_NONE:
            context.check_hostname = False
        context.verify_mode = reqs
        if tls.ca_certs is not None:
            context.load_verify_locations(tls.ca_certs)
        else:
            context.load_default_certs()
        return context


def client_options(
    settings: MqttSettings, *, gateway_id: str, layout: TopicLayout | None = None
) -> ClientOptions:
    """The connection arguments for ``settings``. Raises ``ConfigError`` for TLS files
    without ``tls``, a key without a certificate, or a password without a user name."""
    problems = []
    if not settings.tls and (settings.ca_file or settings.cert_file or settings.key_file):
        problems.append("mqtt.ca_file/cert_file/key_file need mqtt.tls = true")
    if settings.key_file is not None and settings.cert_file is None:
        problems.append("mqtt.key_file needs mqtt.cert_file")
    if settings.password is not None and settings.username is None:
        problems.append("mqtt.password needs mqtt.username")
    if problems:
        raise ConfigError("mqtt", tuple(problems))
    layout = layout or TopicLayout(settings.topic_prefix)
    tls = None
    if settings.tls:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,  # None: system store
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,  # verifies the host name too
        )
    will = aiomqtt.Will(
        layout.gateway_status(gateway_id),
        encode_gateway_status(GatewayStatus(GatewayState.OFFLINE, OfflineCause.LOST)),
        qos=1,
        retain=True,
    )
    return ClientOptions(
        hostname=settings.host,
        port=settings.port,
        identifier=f"biogw-{gateway_id}",
        keepalive=settings.keepalive_s,
        will=will,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        tls_params=tls,
    )
