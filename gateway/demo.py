"""``biogw demo``: the whole system in one process on a bare machine.

Role: assemble, for the duration of ``Demo``'s ``async with``:

* the databases: the configured ones, or an embedded PostgreSQL (pgserver) in a scratch
  directory with both databases (care and research) migrated;
* the broker: the configured one, or a Mosquitto child process on a free loopback port
  (``transport.broker.LocalBroker``);
* a scratch key store with a fresh random master key (demo only: it dies with the demo);
* N simulated garments on the virtual Bluetooth link, each paired to an enrolled demo
  wearer who granted ``core.service``, ``clinical.care`` and ``research.internal``;

then ``run()`` runs the gateway (``app.run_gateway``) and the ingester
(``ingest.service.run_ingest``) side by side until cancelled. The same pieces run as
separate processes against real servers (``biogw gateway``, ``biogw ingest``) with
configuration only.

Must not: touch a configured database's existing subjects (demo wearers are added, never
removed), keep the demo's master key anywhere but in memory and the scratch directory,
or log names or subject ids above DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID, uuid4

import psycopg

from devices.garment.profile import GARMENT_PROFILE
from devices.sim.fleet import garment_address
from devices.sim.sentlog import SentLogSink
from gateway.app import GatewayHandle, run_gateway
from gateway.care_db import (
    apply_care_migrations,
    connect,
    databases,
    embedded_research_database,
)
from gateway.config import Settings
from gateway.consent import CollectionMethod, ConsentRecord, Grant, Period, Scope
from gateway.ingest.service import IngestHandle, run_ingest
from gateway.privacy.keystore import FileKeyStore
from gateway.store.consents import append_events
from gateway.store.devices import record_paired_device
from gateway.store.embedded import embedded_postgres
from gateway.store.identity import add_subject
from gateway.transport.broker import LocalBroker

__all__ = ["DEMO_SCOPES", "Demo", "DemoWearer", "enroll_demo_wearers"]

logger = logging.getLogger(__name__)

DEMO_SCOPES: tuple[Scope, ...] = (Scope.CORE_SERVICE, Scope.CLINICAL_CARE, Scope.RESEARCH_INTERNAL)
DEMO_POLICY = "biogw-demo"


@dataclass(frozen=True, slots=True)
class DemoWearer:
    label: str
    subject_id: UUID
    device_key: UUID
    address: str


async def enroll_demo_wearers(
    conn: psycopg.AsyncConnection[Any], count: int, *, now_ns: int
) -> list[DemoWearer]:
    """Enroll ``count`` demo wearers, each paired to simulated garment ``i`` and consenting
    to ``DEMO_SCOPES`` from an hour before ``now_ns`` (so frames already in flight are
    covered)."""
    wearers = []
    start_ns = (now_ns - 3600 * 10**9) // 1000 * 1000  # consent times are whole µs
    for index in range(1, count + 1):
        label = f"Demo Wearer {index}"
        subject = await add_subject(conn, name=label, birth_date=None, email=None)
        address = garment_address(index)
        device = await record_paired_device(
            conn,
            mac=address,
            serial=None,
            model="biogw sim garment",
            profile=GARMENT_PROFILE.name,
            owner_subject_id=subject,
            actor_role="demo",
        )
        grants = [
            Grant(
                uuid4(),
                ConsentRecord(
                    record_id=uuid4(),
                    subject_id=subject,
                    scope=scope,
                    period=Period(start_ns, None),
                    actor=None,
                    purpose="TREAT" if scope is not Scope.RESEARCH_INTERNAL else "HRESCH",
                    policy_version=DEMO_POLICY,
                    policy_text_sha256="00" * 32,
                    collection_method=CollectionMethod.APP,
                    recorded_at_ns=start_ns,
                ),
            )
            for scope in DEMO_SCOPES
        ]
        await append_events(conn, grants, actor_role="demo")
        wearers.append(DemoWearer(label, subject, device, address))
    return wearers


@dataclass(slots=True)
class DemoParts:
    """What ``Demo`` set up, for the display and the tests."""

    workdir: Path
    settings: Settings
    care_dsn: str
    research_dsn: str
    broker: str
    wearers: list[DemoWearer] = field(default_factory=list)
    gateway: GatewayHandle | None = None
    ingest: IngestHandle | None = None
    started_s: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once both the gateway and the ingester are running."""

    def _started(self) -> None:
        if self.gateway is not None and self.ingest is not None:
            self.ready.set()


class Demo:
    """``async with Demo(settings, garments=3) as demo: await demo.run()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        garments: int = 3,
        broker_configured: bool = False,
        database_configured: bool = False,
        sent_log: Callable[[str], SentLogSink | None] | None = None,
    ) -> None:
        if not 1 <= garments <= 64:
            raise ValueError("garments must be between 1 and 64")
        self._settings = settings
        self._garments = garments
        self._broker_configured = broker_configured
        self._database_configured = database_configured
        self._sent_log = sent_log
        """The simulated garments record what they sent there (tests' ground truth)."""
        self._stack = AsyncExitStack()
        self.parts: DemoParts | None = None
        self._keystore: FileKeyStore | None = None

    async def __aenter__(self) -> Self:
        stack = self._stack
        await stack.__aenter__()
        try:
            await self._setup(stack)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _setup(self, stack: AsyncExitStack) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="biogw-demo-"))
        stack.callback(shutil.rmtree, workdir, True)
        settings = self._settings
        if self._database_configured:
            dbs = await stack.enter_async_context(databases(settings))
            care, research = dbs.care, dbs.research
            if research is None:
                raise ValueError("the demo needs database.research_dsn next to care_dsn")
        else:
            care = await stack.enter_async_context(embedded_postgres(workdir))
            await apply_care_migrations(care)
            research = await embedded_research_database(care)
        mqtt = settings.mqtt
        if not self._broker_configured:
            broker = LocalBroker(workdir / "mosquitto")
            await asyncio.to_thread(broker.start)
            stack.callback(broker.stop)
            mqtt = mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port, "tls": False})
        self._keystore = FileKeyStore(workdir / "keys", secrets.token_bytes(32))
        settings = settings.model_copy(
            update={
                "sim": settings.sim.model_copy(update={"garment": self._garments, "polar": 0}),
                "ble": settings.ble.model_copy(update={"link": "virtual"}),
                "mqtt": mqtt,
                "spool": settings.spool.model_copy(update={"dir": workdir / "spool"}),
                "metrics": settings.metrics.model_copy(update={"port": 0}),
            }
        )
        async with await connect(care) as conn:
            wearers = await enroll_demo_wearers(conn, self._garments, now_ns=time.time_ns())
        self.parts = DemoParts(
            workdir, settings, care, research, f"{mqtt.host}:{mqtt.port}", wearers
        )

    async def run(self) -> None:
        """Gateway and ingester until cancelled."""
        parts, keystore = self.parts, self._keystore
        if parts is None or keystore is None:
            raise RuntimeError("Demo.run() needs `async with Demo(...)` first")

        def gateway_ready(handle: GatewayHandle) -> None:
            parts.gateway = handle
            parts._started()

        def ingest_ready(handle: IngestHandle) -> None:
            parts.ingest = handle
            parts._started()

        async with asyncio.TaskGroup() as group:
            group.create_task(
                run_ingest(
                    parts.settings,
                    care_dsn=parts.care_dsn,
                    research_dsn=parts.research_dsn,
                    ready=ingest_ready,
                    metrics_port=0,
                ),
                name="demo.ingest",
            )
            group.create_task(
                run_gateway(
                    parts.settings,
                    keystore,
                    care_dsn=parts.care_dsn,
                    ready=gateway_ready,
                    sent_log=self._sent_log,
                ),
                name="demo.gateway",
            )
