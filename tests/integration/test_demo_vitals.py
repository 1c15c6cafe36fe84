"""Issue 6 acceptance 4: ``biogw demo`` stores vitals for every simulated wearer, and the
stored heart and respiration rates match the simulator's ground truth.

The demo runs as ``biogw demo`` does (embedded PostgreSQL, owned Mosquitto, simulated
garments on the bumble virtual link, gateway and ingester with its vitals stage in one
process) for ``BIOGW_VITALS_S`` seconds (default 100). The garments' sent logs tie each
stored ECG frame (by sequence number) to the device time it carried, which maps the
stored vitals' UTC times onto the simulator's timeline, where its ground truth is: the
R-peak times of the synthetic ECG and the breath onsets of the respiration band.

* every wearer has stored heart rate (10 s windows), respiration rate (30 s windows),
  activity and posture;
* each stored 10 s heart rate is within 2 bpm of the true mean rate of the beats in its
  window; each stored 30 s respiration rate within 1 breath/min of the true rate of the
  breaths in its window (every wearer has its share of windows).

The demo's wearers rest, so their rates change little over a minute; that the findings
are placed at the right time is shown on rates that ramp up in
``tests/gateway/ingest/test_tracks.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
import pytest

from devices.sim.sentlog import Outcome, SentLog, SentLogSink
from gateway.config import load_settings
from gateway.demo import Demo, DemoWearer
from gateway.transport.broker import MOSQUITTO
from tests.processing.truth_rates import true_heart_rate, true_resp_rate

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="the demo needs the mosquitto binary")

RUN_S = float(os.environ.get("BIOGW_VITALS_S", "100"))
GARMENTS = 3
HR_TOLERANCE_BPM = 2.0
RR_TOLERANCE_BPM = 1.0


async def _rows(dsn: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query, args)
        return list(await cur.fetchall())


async def _device_offset_ns(dsn: str, wearer: DemoWearer, log: SentLog) -> int:
    """UTC minus device time of the wearer's ECG frames (median over the stored ones)."""
    sent = {
        f.sequence: f.device_time_ns
        for f in log.frames(outcome=Outcome.SENT)
        if f.stream == "ecg" and f.device_time_ns is not None
    }
    stored = await _rows(
        dsn,
        "SELECT sequence, time_ns FROM clinical.frames WHERE device_key = %s AND stream = 'ecg'",
        wearer.device_key,
    )
    diffs = [int(t) - int(sent[s]) for s, t in stored if s in sent]
    assert len(diffs) > 10, "too few ECG frames to tie stored times to device times"
    return int(np.median(diffs))


@pytest.mark.timeout(RUN_S + 180)
async def test_demo_stores_vitals_matching_the_simulator_truth() -> None:
    logs: dict[str, SentLog] = {}

    def log_for(address: str) -> SentLogSink:
        logs[address] = SentLog(max_frames=None)
        return logs[address]

    async with Demo(load_settings(), garments=GARMENTS, sent_log=log_for) as demo:
        parts = demo.parts
        assert parts is not None
        running = asyncio.create_task(demo.run())
        try:
            await asyncio.wait_for(parts.ready.wait(), 60)
            began = time.monotonic()
            await asyncio.sleep(RUN_S)
            assert parts.gateway is not None
            assert parts.gateway.link.fleet is not None
            sources = {
                m.address.upper(): m.device.sources for m in parts.gateway.link.fleet.devices
            }
            offsets = {
                w.subject_id: await _device_offset_ns(parts.care_dsn, w, logs[w.address])
                for w in parts.wearers
            }
            vitals = await _rows(
                parts.care_dsn, "SELECT subject_id, kind, ts, value, window_s FROM clinical.vitals"
            )
            research_kinds = await _rows(
                parts.research_dsn, "SELECT DISTINCT kind FROM pseudo.vitals"
            )
        finally:
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
    print(f"demo ran {time.monotonic() - began:.0f} s with vitals")

    by_subject: dict[UUID, list[tuple[str, int, float, float]]] = defaultdict(list)
    for subject, kind, ts, value, window_s in vitals:
        ts_ns = round(ts.timestamp() * 1e6) * 1000
        by_subject[subject].append((kind, ts_ns, float(value), float(window_s)))
    assert {k for (k,) in research_kinds} >= {"hr_bpm", "resp_rate_bpm"}

    hr_errors: list[float] = []
    rr_errors: list[float] = []
    for wearer in parts.wearers:
        counted = (len(hr_errors), len(rr_errors))
        rows = by_subject[wearer.subject_id]
        kinds = {kind for kind, *_ in rows}
        assert kinds >= {"hr_bpm", "resp_rate_bpm", "enmo_mg", "posture"}, (wearer.label, kinds)
        truth = sources[wearer.address.upper()]
        beats = np.asarray(truth.ecg.truth().r_peak_times_s)
        onsets = np.asarray(truth.resp.truth().onset_times_s)
        offset = offsets[wearer.subject_id]
        for kind, ts_ns, value, window_s in rows:
            end_s = (ts_ns - offset) / 1e9
            if kind == "hr_bpm":
                hr_errors.append(abs(value - true_heart_rate(beats, end_s - window_s, end_s)))
            elif kind == "resp_rate_bpm":
                expected = true_resp_rate(onsets, end_s - window_s, end_s)
                rr_errors.append(abs(value - expected))
        assert len(hr_errors) - counted[0] >= RUN_S // 10 - 3, wearer.label
        assert len(rr_errors) - counted[1] >= RUN_S // 30 - 1, wearer.label
    print(
        f"vitals vs truth over {len(parts.wearers)} wearers: "
        f"HR {len(hr_errors)} windows, max error {max(hr_errors):.2f} bpm; "
        f"respiration {len(rr_errors)} windows, max error {max(rr_errors):.2f} breaths/min"
    )
    assert np.all(np.isfinite(hr_errors)), "a stored window without true beats"
    assert np.all(np.isfinite(rr_errors)), "a stored window without true breaths"
    assert max(hr_errors) <= HR_TOLERANCE_BPM
    assert max(rr_errors) <= RR_TOLERANCE_BPM
