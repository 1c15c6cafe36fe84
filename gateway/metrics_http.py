"""The Prometheus metrics endpoint: ``GET``/``HEAD /metrics`` over HTTP/1.1.

Role: serve a ``GatewayMetrics`` (``gateway.metrics``) on ``asyncio.start_server``, one
request per connection, strictly parsed (RFC 9112); malformed or oversized requests get
400 and are counted in ``GatewayMetrics.http``, unknown paths 404, other methods 405, a
slow request 408, a failing source 500. No threads, no framework.

Must not: log request bytes, label values or payloads above DEBUG; keep state beyond the
``serve_metrics`` context.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final, Literal

from prometheus_client import CONTENT_TYPE_LATEST

from gateway.metrics import GatewayMetrics

__all__ = ["MAX_REQUEST_BYTES", "serve_metrics"]

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 8192
"""Request line and headers, with the blank line ending them, at most."""

# --- the HTTP endpoint -------------------------------------------------------------------

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE_RE: Final = re.compile(rb"(" + _TOKEN + rb") (/[\x21-\x7e]*) HTTP/1\.([01])")
_HEADER_RE: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff]|[ \t])*)")
_LINGER_S: Final = 1.0
_LINGER_MAX_BYTES: Final = 65536


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str


def _parse_request(head: bytes) -> _Request | None:
    """Request line and header lines (CRLF-separated, no final blank line); ``None`` if
    malformed (RFC 9112: bad syntax, obsolete line folding, an HTTP/1.1 request without
    exactly one ``Host``)."""
    line, *headers = head.split(b"\r\n")
    match = _REQUEST_LINE_RE.fullmatch(line)
    if match is None:
        return None
    hosts = 0
    for header in headers:
        h = _HEADER_RE.fullmatch(header)
        if h is None:
            return None
        hosts += h.group(1).lower() == b"host"
    if hosts > 1 or (match.group(3) == b"1" and hosts != 1):
        return None
    path = match.group(2).split(b"?", 1)[0].decode("ascii")
    return _Request(match.group(1).decode("ascii"), path)


async def _read_head(reader: asyncio.StreamReader) -> bytes | Literal["eof", "bad"]:
    """The request head without its blank line; ``eof`` if the peer sent nothing at all,
    ``bad`` if it ended early or the head would exceed ``MAX_REQUEST_BYTES``."""
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) >= MAX_REQUEST_BYTES:
            return "bad"
        chunk = await reader.read(MAX_REQUEST_BYTES - len(buffer))
        if not chunk:
            return "bad" if buffer else "eof"
        buffer += chunk
    return bytes(buffer[:end])


def _response(
    status: HTTPStatus,
    body: bytes,
    *,
    head_only: bool = False,
    content_type: str = "text/plain; charset=utf-8",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    lines = [f"HTTP/1.1 {status.value} {status.phrase}", f"Content-Type: {content_type}"]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in extra]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head if head_only else head + body


class _Phase(enum.Enum):
    READING = enum.auto()
    RESPONDING = enum.auto()
    LINGERING = enum.auto()


@dataclass(slots=True)
class _Connection:
    writer: asyncio.StreamWriter
    phase: _Phase = _Phase.READING


class _Endpoint:
    """Connection handlers of one ``serve_metrics`` and what shutting down needs."""

    def __init__(self, metrics: GatewayMetrics, read_timeout_s: float) -> None:
        self._metrics = metrics
        self._read_timeout_s = read_timeout_s
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._closing = False
        self._accepted = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._accepted += 1
        task.set_name(f"metrics.http[{self._accepted}]")
        connection = self._connections[task] = _Connection(writer)
        try:
            if not self._closing:
                await self._serve(reader, connection)
        except ConnectionError as exc:
            logger.debug("metrics connection lost: %s", type(exc).__name__)
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        try:
            async with asyncio.timeout(self._read_timeout_s):
                head = await _read_head(reader)
        except TimeoutError:
            self._metrics.http.timeouts += 1
            response = _response(HTTPStatus.REQUEST_TIMEOUT, b"request timeout\n")
        else:
            if head == "eof":
                return
            response = self._respond(head)
        connection.phase = _Phase.RESPONDING
        connection.writer.write(response)
        await connection.writer.drain()
        connection.phase = _Phase.LINGERING
        if not self._closing:
            await _linger(reader, connection.writer)

    def _respond(self, head: bytes | Literal["bad"]) -> bytes:
        http = self._metrics.http
        request = None if head == "bad" else _parse_request(head)
        if request is None:
            http.bad_requests += 1
            logger.debug("metrics endpoint: bad request")
            return _response(HTTPStatus.BAD_REQUEST, b"bad request\n")
        head_only = request.method == "HEAD"
        if request.path != "/metrics":
            http.not_found += 1
            return _response(HTTPStatus.NOT_FOUND, b"not found\n", head_only=head_only)
        if request.method not in ("GET", "HEAD"):
            http.method_not_allowed += 1
            allow = (("Allow", "GET, HEAD"),)
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", extra=allow)
        try:
            body = self._metrics.render()
        except Exception as exc:  # any source's bug: answer 500, keep serving
            http.render_errors += 1
            logger.error("metrics render failed: %s", type(exc).__name__)
            logger.debug("metrics render failure", exc_info=True)
            return _response(HTTPStatus.INTERNAL_SERVER_ERROR, b"render failed\n")
        http.scrapes += 1
        return _response(HTTPStatus.OK, body, head_only=head_only, content_type=CONTENT_TYPE_LATEST)

    async def close(self, grace_s: float) -> None:
        """Stop every handler: idle and lingering connections now, responses in flight
        after ``grace_s`` (then aborted); returns when every handler has finished."""
        self._closing = True
        while self._connections:
            for connection in self._connections.values():
                if connection.phase is not _Phase.RESPONDING:
                    connection.writer.close()
            await asyncio.wait(tuple(self._connections), timeout=grace_s)
            for connection in self._connections.values():
                connection.writer.transport.abort()
            if self._connections:
                await asyncio.wait(tuple(self._connections))
            await asyncio.sleep(0)  # let connections accepted just before closing show up


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close and discard what the peer still sends (bounded), so closing with
    unread input does not reset the connection before the peer read the response."""
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_LINGER_S):
            discarded = 0
            while discarded < _LINGER_MAX_BYTES and (chunk := await reader.read(4096)):
                discarded += len(chunk)


@contextlib.asynccontextmanager
async def serve_metrics(
    metrics: GatewayMetrics,
    *,
    host: str,
    port: int,
    read_timeout_s: float = 5.0,
    shutdown_grace_s: float = 1.0,
) -> AsyncIterator[tuple[str, int]]:
    """Serve ``metrics`` at ``http://host:port/metrics`` while the context is open and
    yield the bound ``(host, port)`` (``port=0`` binds a free port). A client gets
    ``read_timeout_s`` for its whole request head. On exit the listener closes and every
    connection handler has finished."""
    endpoint = _Endpoint(metrics, read_timeout_s)
    server = await asyncio.start_server(endpoint.handle, host, port)
    try:
        bound = server.sockets[0].getsockname()
        logger.info("metrics endpoint on %s:%d", bound[0], bound[1])
        yield str(bound[0]), int(bound[1])
    finally:
        server.close()
        await endpoint.close(shutdown_grace_s)
        await server.wait_closed()
