"""Withdrawal end to end (issue 3, acceptance 4) with a database-backed canary check.

A canary subject in a real care database wears a simulated garment (virtual link, real
time) recorded as paired; consent comes from a ``ConsentWatcher`` (LISTEN/NOTIFY). The
edge pipeline streams the garment through the offset clock and the router into a
recording sink. Withdrawing ``research.internal`` with ``biogw consent withdraw`` (run in a worker
thread while the pipeline streams) at T stops
research frames timed at or after T once the watcher has reloaded (within 1 s of the
commit) while clinical frames continue; granting again at T2 resumes research frames
timed after T2 (``biogw consent grant``). No research frame's repr holds the canary name,
email, subject id, device key or MAC. Synchronisation waits on the sink and the watcher,
never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

from devices.frame import Frame, StreamKind, Timebase, Unit
from devices.garment.profile import GARMENT_PROFILE
from devices.sim.garment import SimulatedGarment
from devices.sim.radio import VirtualRadio
from gateway.ble.bumble_backend import BumbleAdapter
from gateway.ble.link import BleLink
from gateway.ble.stream import DeviceStream
from gateway.cli import main
from gateway.consent import Scope
from gateway.edge import DatabaseSubjectDirectory, EdgePipeline
from gateway.privacy import DateShifter, FileKeyStore, Pseudonymizer
from gateway.router import ResearchFrame, Routed, Router
from gateway.store.consents import ConsentWatcher, append_events
from gateway.store.devices import mark_unpaired, record_paired_device
from gateway.store.identity import add_subject
from tests.gateway.edge_outbox import CallbackOutbox
from tests.gateway.store.consent_factory import grant

Conn = psycopg.AsyncConnection[Any]
S = 1_000_000_000
GATEWAY = "F0:F0:F0:F0:F0:78"
MAC = "C4:A7:3B:5E:91:F2"
CANARY_NAME = "Zephyrine Quillfeather-Canary"
CANARY_EMAIL = "zq.canary.7f3a@example.org"
CARE_TEAM = "org:clinic-a/team:cardio"
RESEARCH = "org:biogw/research"
WAIT_S = 15.0


def now_us_ns() -> int:
    """Now, UTC ns truncated to whole microseconds (what the consent store keeps)."""
    return time.time_ns() // 1000 * 1000


async def biogw(care_db: str, args: list[str]) -> dict[str, Any]:
    """Run ``biogw consent ARGS --method paper`` (the real command, in a worker thread so
    the pipeline keeps streaming) and return its receipt."""
    env = {"BIOGW_DATABASE__CARE_DSN": care_db, "BIOGW_CONFIG": None}
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["consent", *args, "--method", "paper"], env=env
    )
    assert result.exit_code == 0, result.output
    receipt: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return receipt


class Recorder:
    """The pipeline's sink. Every output is kept with the consent phase it was emitted
    in (the phase advances each time the watcher reloads); research times are stored
    unshifted (research time − the subject's whole-week shift)."""

    def __init__(self, shift_ns: int) -> None:
        self.shift_ns = shift_ns
        self.phase = 0
        self.reloaded_ns: list[int] = []
        self.clinical: list[tuple[int, int]] = []
        self.research: list[tuple[int, int, ResearchFrame]] = []
        self._changed = asyncio.Event()

    def on_reload(self, _: UUID) -> None:
        self.phase += 1
        self.reloaded_ns.append(time.time_ns())
        self._changed.set()

    def __call__(self, routed: Routed) -> None:
        if routed.clinical is not None:
            self.clinical.append((self.phase, routed.clinical.frame.time_ns))
        if routed.research is not None:
            unshifted = routed.research.time_ns - self.shift_ns
            self.research.append((self.phase, unshifted, routed.research))
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def link(tmp_path: Path) -> AsyncIterator[tuple[VirtualRadio, BleLink]]:
    async with (
        VirtualRadio() as radio,
        BumbleAdapter(radio, address=GATEWAY, key_dir=tmp_path / "bonds") as adapter,
    ):
        yield radio, BleLink(kind="virtual", adapter=adapter)


@pytest.mark.timeout(60)
async def test_withdrawal_stops_research_within_1s_and_grant_resumes(
    care_db: str, admin: Conn, link: tuple[VirtualRadio, BleLink], tmp_path: Path
) -> None:
    radio, ble = link
    subject = await add_subject(admin, name=CANARY_NAME, birth_date=None, email=CANARY_EMAIL)
    device_key = await record_paired_device(
        admin,
        mac=MAC,
        serial=f"SIM-{MAC.replace(':', '')}",
        model="biogw sim garment",
        profile=GARMENT_PROFILE.name,
        owner_subject_id=subject,
    )
    start = now_us_ns()
    research_grant = grant(subject, Scope.RESEARCH_INTERNAL, start - 60 * S, start)
    grants = [
        grant(subject, Scope.CORE_SERVICE, start - 60 * S, start),
        grant(subject, Scope.CLINICAL_CARE, start - 60 * S, start),
        research_grant,
    ]
    await append_events(admin, grants, actor_role="test")

    keystore = FileKeyStore(tmp_path / "keys", bytes(range(32)))
    shifter = DateShifter(keystore)
    recorder = Recorder(shifter.shift_ns(subject))
    directory = DatabaseSubjectDirectory(admin)
    await directory.track([device_key])
    assert directory.subject_for(str(device_key)) == subject

    async with (
        ConsentWatcher(care_db, on_reload=recorder.on_reload) as watcher,
        SimulatedGarment(radio, address=MAC, seed=11, speed=1.0),
        DeviceStream(ble.client(MAC), GARMENT_PROFILE, device_key=str(device_key)) as stream,
        asyncio.TaskGroup() as group,
    ):
        router = Router(
            directory,
            watcher,
            Pseudonymizer(keystore),
            shifter,
            clinical_actor=CARE_TEAM,
            research_actor=RESEARCH,
        )
        pipeline = EdgePipeline(router, CallbackOutbox(recorder))
        running = group.create_task(pipeline.run_streams([stream]), name="test.edge")

        await recorder.until(lambda: len(recorder.research) >= 3)

        # Withdraw research with the command a person runs; T is the withdrawal's
        # effective time from its receipt. The watcher reloads within 1 s.
        receipt = await biogw(care_db, ["withdraw", str(subject), "research.internal"])
        committed_ns = time.time_ns()
        t_withdraw = int(receipt["services"][0]["effectiveNs"])
        await recorder.until(lambda: recorder.phase >= 1, timeout_s=1.0)
        assert recorder.reloaded_ns[0] - committed_ns <= S
        # Clinical frames continue: wait until they cover 1.5 s past T.
        await recorder.until(
            lambda: any(p >= 1 and t >= t_withdraw + 3 * S // 2 for p, t in recorder.clinical)
        )
        late = [t for p, t, _ in recorder.research if p >= 1 and t >= t_withdraw]
        assert late == []

        # Grant research again at T2 (the command): research frames timed after T2 resume.
        policy = tmp_path / "policy.txt"
        policy.write_text("research policy 2026-01\n")
        receipt = await biogw(
            care_db,
            [
                "grant",
                str(subject),
                "research.internal",
                "--policy",
                str(policy),
                "--policy-version",
                "2026-01",
            ],
        )
        t_regrant = int(receipt["services"][0]["periodStartNs"])
        await recorder.until(lambda: recorder.phase >= 2, timeout_s=1.0)
        await recorder.until(
            lambda: sum(p >= 2 and t >= t_regrant for p, t, _ in recorder.research) >= 3
        )
        running.cancel()

    # Nothing timed in the withdrawn gap [T, T2) was emitted once the watcher reloaded.
    gap = [t for p, t, _ in recorder.research if p >= 1 and t_withdraw <= t < t_regrant]
    assert gap == []
    assert any(p == 0 and t < t_withdraw for p, t, _ in recorder.research)
    assert any(p >= 1 and t >= t_withdraw for p, t in recorder.clinical)
    assert pipeline.counters.research == len(recorder.research)

    needles = {
        CANARY_NAME.lower(),
        CANARY_EMAIL.lower(),
        str(subject),
        subject.hex,
        str(device_key),
        device_key.hex,
        MAC.lower(),
        MAC.replace(":", "").lower(),
    }
    for _, _, frame in recorder.research:
        text = repr(frame).lower()
        assert not [n for n in needles if n in text]


def _device_frame(time_ns: int, timebase: Timebase = Timebase.DEVICE) -> Frame:
    return Frame(
        device_key="k",
        stream=StreamKind.ECG,
        time_ns=time_ns,
        timebase=timebase,
        samples=np.zeros(5),
        unit=Unit.MICROVOLT,
        fs_hz=100.0,
    )


async def test_directory_resolves_bonded_devices_and_refreshes(admin: Conn) -> None:
    subject = await add_subject(admin, name="Dir", birth_date=None, email=None)
    key = await record_paired_device(
        admin, mac=MAC, serial=None, model=None, profile="garment", owner_subject_id=subject
    )
    directory = DatabaseSubjectDirectory(admin)
    assert directory.subject_for(str(key)) is None  # not tracked yet
    await directory.track([key, uuid4()])
    assert directory.subject_for(str(key)) == subject
    assert directory.subject_for("not-a-key") is None
    assert await mark_unpaired(admin, key)
    assert directory.subject_for(str(key)) == subject  # cached until refreshed
    await directory.refresh()
    assert directory.subject_for(str(key)) is None
