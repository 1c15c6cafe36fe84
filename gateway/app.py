"""The gateway process (``biogw gateway``): the whole edge as one task tree.

Role: from a parsed ``Settings`` and a key store, build and run

* the care database connection (subject directory, consent watcher),
* the Bluetooth link (real adapter or virtual link with simulated garments), one
  advertisement watcher and one connection-slot budget per adapter,
* one supervised ``DeviceSession`` per bonded device (``identity.devices``),
* the ``EdgePipeline`` (gaps, clock map, consent router) into the ``SpoolOutbox``,
* the durable spool and the ``MqttPublisher`` (QoS 1, status topics, last will),
* the Prometheus metrics endpoint,

under one ``asyncio.TaskGroup`` with every task named. Cancelling ``run_gateway`` is the
clean stop (the publisher says goodbye, the spool commits, links close).

Must not: parse configuration or the environment (``main`` does), log subject ids,
addresses or payloads above DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from devices.profiles import profile_by_name
from devices.registry import Profile
from devices.sim.sentlog import SentLogSink
from gateway.backoff import BackoffPolicy
from gateway.ble.link import BleLink, open_link
from gateway.ble.presence import AdvertisementWatcher
from gateway.ble.session import DeviceSession, SessionOptions
from gateway.ble.slots import SlotBudget
from gateway.care_db import connect
from gateway.config import Settings
from gateway.edge import DatabaseSubjectDirectory, EdgePipeline
from gateway.errors import ConfigError
from gateway.gateway_metrics import gateway_sources
from gateway.metrics import GatewayMetrics
from gateway.metrics_http import serve_metrics
from gateway.privacy import DateShifter, Pseudonymizer
from gateway.privacy.keystore import FileKeyStore
from gateway.router import Router
from gateway.store.consents import ConsentWatcher
from gateway.store.devices import SessionTarget, session_targets
from gateway.transport.mqtt import MqttPublisher
from gateway.transport.outbox import SpoolOutbox
from gateway.transport.spool import Spool
from gateway.transport.topics import TopicLayout

__all__ = ["GatewayHandle", "run_gateway"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class GatewayHandle:
    """The running parts, for the CLI's display and for tests."""

    link: BleLink
    edge: EdgePipeline
    publisher: MqttPublisher
    spool: Spool
    outbox: SpoolOutbox
    sessions: list[DeviceSession] = field(default_factory=list)
    metrics_address: tuple[str, int] | None = None


def _session_options(settings: Settings) -> SessionOptions:
    return SessionOptions(
        watchdog_s=settings.gateway.watchdog_s,
        notification_queue=settings.gateway.notification_queue,
        connect_timeout_s=settings.ble.connect_timeout_s,
    )


def _profile(target: SessionTarget) -> Profile:
    profile = profile_by_name(target.profile)
    if profile is not None:
        return profile
    raise ConfigError("identity.devices", (f"unknown profile {target.profile!r}",))


async def run_gateway(
    settings: Settings,
    keystore: FileKeyStore,
    *,
    care_dsn: str,
    ready: Callable[[GatewayHandle], None] | None = None,
    sent_log: Callable[[str], SentLogSink | None] | None = None,
) -> None:
    """Run the edge until cancelled; ``ready`` is called once everything is started.
    ``sent_log``: the virtual link's simulated devices record what they sent there
    (``ble.link.open_link``; tests and the demo's ground truth)."""
    gw = settings.gateway
    async with AsyncExitStack() as stack:
        conn = await connect(care_dsn)
        stack.push_async_callback(conn.close)
        targets = await session_targets(conn)
        directory = DatabaseSubjectDirectory(conn)
        await directory.track(t.device_key for t in targets)
        consents = await stack.enter_async_context(ConsentWatcher(care_dsn))
        router = Router(
            directory,
            consents,
            Pseudonymizer(keystore),
            DateShifter(keystore),
            clinical_actor=gw.care_team,
            research_actor=gw.research_actor,
        )
        spool = stack.enter_context(
            Spool(settings.spool.dir, max_bytes=settings.spool.max_bytes, sync=settings.spool.sync)
        )
        publisher = MqttPublisher(spool, settings=settings.mqtt, gateway_id=gw.id)
        layout = TopicLayout(settings.mqtt.topic_prefix)
        outbox = SpoolOutbox(spool, layout, wake=publisher.notify)
        edge = EdgePipeline(router, outbox, status=publisher, queue_size=gw.edge_queue)
        link = await stack.enter_async_context(
            open_link(settings.ble, settings.sim, log_for=sent_log)
        )
        watcher = await stack.enter_async_context(AdvertisementWatcher(link))
        handle = GatewayHandle(link, edge, publisher, spool, outbox)
        slots = SlotBudget(gw.slots_per_adapter)
        policy = BackoffPolicy(initial_s=gw.reconnect_initial_s, max_s=gw.reconnect_max_s)
        rng = random.Random()  # jitter only
        for target in targets:
            handle.sessions.append(
                DeviceSession(
                    device_key=str(target.device_key),
                    address=target.address,
                    profile=_profile(target),
                    link=link,
                    watcher=watcher,
                    slots=slots,
                    sink=edge,
                    policy=policy,
                    options=_session_options(settings),
                    rng=rng,
                )
            )
        metrics = GatewayMetrics()
        for source in gateway_sources(handle, slots, router):
            metrics.register(source)
        group = await stack.enter_async_context(asyncio.TaskGroup())
        group.create_task(publisher.run(), name=f"mqtt[{gw.id}]")
        group.create_task(edge.run(), name="edge")
        for session in handle.sessions:
            group.create_task(session.run(), name=f"ble[{session.device_key}].session")
        if settings.metrics.enabled:
            handle.metrics_address = await stack.enter_async_context(
                serve_metrics(metrics, host=settings.metrics.host, port=settings.metrics.port)
            )
        logger.info("gateway %s: %d device session(s) started", gw.id, len(handle.sessions))
        if ready is not None:
            ready(handle)
        await asyncio.Event().wait()  # until cancelled
