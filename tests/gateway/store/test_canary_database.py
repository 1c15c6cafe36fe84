"""Issue 3, acceptance 2, as written: subjects enrolled in the care database with canary
names, emails and MACs, three simulated garments paired to them, one minute of real-time
streaming through the edge pipeline (virtual link, offset clock, database subject
directory, consent from the LISTEN/NOTIFY watcher, router). Every research frame,
serialized (repr, pickle, JSON of its fields), holds no canary, subject id, device key or
MAC; research time − clinical time is the subject's whole-week shift for every frame;
pseudonyms of two subjects in two domains don't link.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
import re
import secrets
import time
from collections import defaultdict
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from devices.frame import StreamKind
from devices.garment.profile import GARMENT_PROFILE
from devices.sim.garment import SimulatedGarment
from devices.sim.radio import VirtualRadio
from gateway.ble.bumble_backend import BumbleAdapter
from gateway.ble.link import BleLink
from gateway.ble.stream import DeviceStream
from gateway.consent import Scope
from gateway.edge import DatabaseSubjectDirectory, EdgePipeline
from gateway.privacy import DateShifter, FileKeyStore, Pseudonymizer
from gateway.router import ResearchFrame, Routed, Router
from gateway.store.consents import ConsentWatcher, append_events
from gateway.store.devices import record_paired_device
from gateway.store.identity import add_subject
from tests.gateway.edge_outbox import CallbackOutbox
from tests.gateway.store.consent_factory import grant

S = 1_000_000_000
WEEK_NS = 7 * 24 * 3600 * S
SECONDS = 60.0
MAC_PATTERN = re.compile(rb"([0-9a-f]{2}[:-]){5}[0-9a-f]{2}", re.IGNORECASE)


def _serialized(frame: ResearchFrame) -> bytes:
    fields = {
        f.name: getattr(frame, f.name).tolist()
        if hasattr(getattr(frame, f.name), "tolist")
        else str(getattr(frame, f.name))
        for f in dataclasses.fields(frame)
    }
    return repr(frame).encode() + pickle.dumps(frame) + json.dumps(fields).encode()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_minute_of_three_enrolled_wearers_leaks_nothing_to_research(
    care_db: str, admin: psycopg.AsyncConnection[Any], tmp_path: Path
) -> None:
    keystore = FileKeyStore(tmp_path / "keys", secrets.token_bytes(32))
    shifter = DateShifter(keystore)
    pseudonymizer = Pseudonymizer(keystore)
    wearers: list[tuple[UUID, UUID, str, str, str]] = []  # subject, key, mac, name, email
    now = time.time_ns() // 1000 * 1000
    for n in range(3):
        name = f"Canary{secrets.token_hex(4)} Wearer{n}"
        email = f"canary.{secrets.token_hex(4)}@example.org"
        mac = f"D0:00:00:00:0{n + 1}:{secrets.randbelow(256):02X}"
        subject = await add_subject(admin, name=name, birth_date=None, email=email)
        key = await record_paired_device(
            admin,
            mac=mac,
            serial=f"SIM-{mac.replace(':', '')}",
            model="biogw sim garment",
            profile=GARMENT_PROFILE.name,
            owner_subject_id=subject,
        )
        grants = [
            grant(subject, scope, now - 60 * S)
            for scope in (Scope.CORE_SERVICE, Scope.CLINICAL_CARE, Scope.RESEARCH_INTERNAL)
        ]
        await append_events(admin, grants, actor_role="test")
        wearers.append((subject, key, mac, name, email))

    outputs: dict[UUID, list[Routed]] = defaultdict(list)
    ecg_samples: dict[UUID, int] = defaultdict(int)
    done = asyncio.Event()

    def sink(routed: Routed) -> None:
        assert routed.clinical is not None  # everything is granted
        subject = routed.clinical.subject_id
        outputs[subject].append(routed)
        if routed.clinical.frame.stream is StreamKind.ECG:
            ecg_samples[subject] += routed.clinical.frame.n_samples
        if len(ecg_samples) == 3 and min(ecg_samples.values()) >= SECONDS * 250:
            done.set()

    directory = DatabaseSubjectDirectory(admin)
    await directory.track([key for _, key, *_ in wearers])
    async with AsyncExitStack() as stack:
        radio = await stack.enter_async_context(VirtualRadio())
        adapter = await stack.enter_async_context(BumbleAdapter(radio, address="F0:F0:F0:F0:F0:33"))
        link = BleLink(kind="virtual", adapter=adapter)
        watcher = await stack.enter_async_context(ConsentWatcher(care_db))
        streams = []
        for n, (_, key, mac, _, _) in enumerate(wearers):
            await stack.enter_async_context(SimulatedGarment(radio, address=mac, seed=n))
            streams.append(
                await stack.enter_async_context(
                    DeviceStream(link.client(mac), GARMENT_PROFILE, device_key=str(key))
                )
            )
        router = Router(
            directory,
            watcher,
            pseudonymizer,
            shifter,
            clinical_actor="org:clinic/team:a",
            research_actor="org:biogw/research",
        )
        group = await stack.enter_async_context(asyncio.TaskGroup())
        running = group.create_task(
            EdgePipeline(router, CallbackOutbox(sink)).run_streams(streams), name="test.edge"
        )
        async with asyncio.timeout(SECONDS + 60):
            await done.wait()
        running.cancel()

    needles: list[bytes] = []
    for subject, key, mac, name, email in wearers:
        needles += [name.encode(), email.encode(), str(subject).encode(), subject.hex.encode()]
        needles += [subject.bytes, str(key).encode(), key.hex.encode(), key.bytes]
        needles += [mac.encode(), mac.replace(":", "").encode(), mac.lower().encode()]
    research_count = 0
    for subject, *_ in wearers:
        shift = shifter.shift_ns(subject)
        assert shift % WEEK_NS == 0
        assert shift != 0
        pseudonyms = set()
        for routed in outputs[subject]:
            assert routed.research is not None
            assert routed.clinical is not None
            research_count += 1
            assert routed.research.time_ns - routed.clinical.frame.time_ns == shift
            pseudonyms.add(routed.research.pseudonym)
            # The identified path does carry the device key: the needles are well formed.
            assert routed.clinical.frame.device_key.encode() in needles
            blob = _serialized(routed.research)
            assert not [n for n in needles if n in blob]
            assert MAC_PATTERN.search(blob) is None
        assert pseudonyms == {pseudonymizer.pseudonym(subject, "research")}
    assert research_count > 3 * SECONDS * 8  # ~8.5 frames/s per garment for a minute

    a, b = wearers[0][0], wearers[1][0]
    four = {pseudonymizer.pseudonym(s, d) for s in (a, b) for d in ("research", "partner")}
    assert len(four) == 4
