"""Publishes the alerts the vitals stage stored, on ``{prefix}/alerts/{subject_id}/{kind}``.

Role: ``AlertPublisher`` keeps one MQTT connection (aiomqtt, QoS 1, its own client id)
and publishes each alert as JSON once it is stored in ``clinical.alerts``. The table is
the record; MQTT is the live notification: alerts wait in a bounded queue while the
broker is away (``capacity``; beyond it the oldest are dropped and counted), and one
published while the connection breaks may come twice (QoS 1: receivers deduplicate on
``id``).

Payload: ``{"id", "subject_id", "kind", "severity", "ts", "end_ts", "detail"}`` with
times in ISO 8601 UTC. The topic and payload name the subject: the broker's ACL lets only
the care side read ``alerts/#`` (deploy/mosquitto/biogw.acl).

Must not: log a payload, topic or subject id above DEBUG; block the vitals stage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import aiomqtt

from gateway.backoff import BackoffPolicy, BackoffState
from gateway.config import MqttSettings
from gateway.ingest.vitals import StoredAlert
from gateway.transport.mqtt_client import TransportError, client_options, translate_error
from gateway.transport.topics import TopicLayout

__all__ = ["AlertCounters", "AlertPublisher", "encode_alert"]

logger = logging.getLogger(__name__)

_DEFAULT_CAPACITY: Final = 10_000


@dataclass(slots=True)
class AlertCounters:
    published: int = 0
    dropped: int = 0
    """Alerts not published because the queue was full (they are stored)."""
    failures: int = 0
    connected: int = 0
    """1 while connected to the broker (gauge)."""
    queued: int = 0
    """Alerts waiting to be published (gauge)."""


def encode_alert(alert: StoredAlert) -> bytes:
    body = {
        "id": str(alert.id),
        "subject_id": str(alert.subject_id),
        "kind": alert.kind,
        "severity": alert.severity,
        "ts": alert.ts.isoformat(),
        "end_ts": None if alert.end_ts is None else alert.end_ts.isoformat(),
        "detail": alert.detail,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


class AlertPublisher:
    def __init__(
        self,
        mqtt: MqttSettings,
        *,
        client_id: str,
        policy: BackoffPolicy,
        capacity: int = _DEFAULT_CAPACITY,
        rng: random.Random | None = None,
    ) -> None:
        self.counters = AlertCounters()
        self._options = client_options(mqtt, gateway_id=client_id)
        self._client_id = client_id
        self._layout = TopicLayout(mqtt.topic_prefix)
        self._policy = policy
        self._queue: deque[StoredAlert] = deque()
        self._capacity = capacity
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._rng = rng or random.Random()  # jitter only

    def offer(self, alerts: Sequence[StoredAlert]) -> None:
        """Queue ``alerts`` for publishing; never waits."""
        for alert in alerts:
            if len(self._queue) >= self._capacity:
                self._queue.popleft()
                self.counters.dropped += 1
            self._queue.append(alert)
        self.counters.queued = len(self._queue)
        if self._queue:
            self._empty.clear()
            self._wake.set()

    async def drained(self) -> None:
        """Return once every alert offered so far is published (or dropped)."""
        await self._empty.wait()

    async def run(self) -> None:
        """Publish until cancelled, reconnecting with backoff."""
        state = BackoffState()
        while True:
            delay = self._policy.delay_s(state, self._rng.random())
            if delay:
                await asyncio.sleep(delay)
            try:
                async with self._client() as client:
                    self.counters.connected = 1
                    state = BackoffState()
                    await self._publish_forever(client)
            except aiomqtt.MqttError as exc:
                error: TransportError = translate_error(exc)
                self.counters.failures += 1
                logger.warning("alerts: broker connection failed (%s)", error.kind)
                state = self._policy.failed(state)
            finally:
                self.counters.connected = 0

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        while True:
            while self._queue:
                alert = self._queue[0]
                topic = self._layout.alert(alert.subject_id, alert.kind)
                await client.publish(topic, encode_alert(alert), qos=1)
                if self._queue and self._queue[0] is alert:  # not dropped meanwhile
                    self._queue.popleft()
                self.counters.published += 1
                self.counters.queued = len(self._queue)
            self._empty.set()
            self._wake.clear()
            await self._wake.wait()

    def _client(self) -> aiomqtt.Client:
        o = self._options
        return aiomqtt.Client(
            o.hostname,
            o.port,
            username=o.username,
            password=o.password,
            identifier=self._client_id,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=False,
            keepalive=o.keepalive,
            timeout=o.timeout_s,
            tls_params=o.tls_params,
        )
