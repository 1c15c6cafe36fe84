"""Replaying recordings: MIT-BIH records through WFDB, CSV columns, looping, resampling.

Data: MIT-BIH Arrhythmia Database (Moody & Mark, IEEE EMB Mag 20(3):45-50, 2001;
PhysioNet, Goldberger et al., Circulation 2000), ODC-By 1.0; see
/work/shared/data/README.md. The exactness test decodes format 212 by hand from the
``.dat`` bytes (PhysioNet WFDB "signal" format spec: two 12-bit two's-complement samples
in three bytes, low nibble of byte 1 extends sample 0, high nibble sample 1), so it does
not only compare wfdb with itself.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from devices.frame import Unit
from devices.sim.signals import SignalError
from devices.sim.signals.replay import CsvReplay, ReplayError, WfdbReplay
from tests.shared_data import MITDB, requires_mitdb

pytestmark = requires_mitdb
RECORD_LEN = 650_000


def _decode_212(path: Path, n_signals: int, n_samples: int) -> np.ndarray:
    raw = np.frombuffer(path.read_bytes()[: (n_samples * n_signals * 3 + 1) // 2], np.uint8)
    triples = raw[: len(raw) // 3 * 3].reshape(-1, 3).astype(np.int32)
    first = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
    second = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
    values = np.column_stack([first, second]).ravel()
    values = np.where(values >= 2048, values - 4096, values)
    return values[: n_samples * n_signals].reshape(n_samples, n_signals)


def test_replay_at_record_rate_returns_the_record_exactly() -> None:
    replay = WfdbReplay(MITDB / "100")
    assert replay.fs_hz == 360.0
    assert replay.unit is Unit.MICROVOLT
    assert replay.channels == 1
    x = replay.read(5000)
    # header of 100: gain 200 adu/mV, baseline 1024 (both signals)
    digital = _decode_212(MITDB / "100.dat", n_signals=2, n_samples=5000)
    np.testing.assert_allclose(x, (digital[:, 0] - 1024) / 200.0 * 1000.0, rtol=0, atol=1e-9)
    v5 = WfdbReplay(MITDB / "100", channel=1).read(5000)
    np.testing.assert_allclose(v5, (digital[:, 1] - 1024) / 200.0 * 1000.0, rtol=0, atol=1e-9)
    assert WfdbReplay(MITDB / "100").signal_name == "MLII"


@pytest.mark.parametrize(
    ("fs_hz", "up", "down"), [(250.0, 25, 36), (130.0, 13, 36), (500.0, 25, 18)]
)
def test_resampled_length_and_content(fs_hz: float, up: int, down: int) -> None:
    replay = WfdbReplay(MITDB / "106", fs_hz=fs_hz)
    assert replay.loop_samples == math.ceil(RECORD_LEN * up / down)
    original = WfdbReplay(MITDB / "106").read(360 * 60)
    x = replay.read(round(fs_hz * 60))
    t_new = np.arange(len(x)) / fs_hz
    reference = np.interp(t_new, np.arange(len(original)) / 360.0, original)
    inner = slice(round(fs_hz), -round(fs_hz))
    assert np.corrcoef(x[inner], reference[inner])[0, 1] > 0.97
    assert np.max(np.abs(x[inner])) == pytest.approx(np.max(np.abs(original)), rel=0.15)


def test_replay_loops_at_the_end_and_truth_repeats() -> None:
    replay = WfdbReplay(MITDB / "119", fs_hz=130.0)
    period = replay.loop_samples
    first = replay.read(period)
    truth_one = replay.truth()
    again = replay.read(1000)
    np.testing.assert_array_equal(again, first[:1000])
    replay.read(period // 2)
    truth = replay.truth()
    n_one = len(truth_one.times_s)
    np.testing.assert_allclose(truth.times_s[:n_one], truth_one.times_s)
    second = truth.times_s[n_one:] - period / 130.0
    np.testing.assert_allclose(second, truth_one.times_s[: len(second)])
    assert np.all(np.diff(truth.times_s) > 0)
    assert truth.times_s[-1] < (period + period // 2 + 1000) / 130.0
    assert len(truth.times_s) > 1.4 * n_one


def test_mit_bih_100_truth_comes_from_atr_beat_annotations() -> None:
    replay = WfdbReplay(MITDB / "100", fs_hz=250.0)
    replay.read(250 * 60)
    truth = replay.truth()
    assert 65 <= len(truth.times_s) <= 85  # ~74 bpm in the first minute
    assert set(truth.labels.tolist()) <= set("NA")
    np.testing.assert_array_equal(truth.samples, np.round(truth.times_s * 250.0).astype(np.int64))
    full = WfdbReplay(MITDB / "100")
    full.read(RECORD_LEN)
    all_beats = full.truth()
    assert len(all_beats.times_s) == 2273  # MIT-BIH 100: 2239 N + 33 A + 1 V
    assert int(np.sum(all_beats.labels == "V")) == 1
    # the annotations sit on the R waves of the replayed samples
    x = WfdbReplay(MITDB / "100").read(360 * 60)
    index = all_beats.samples[all_beats.samples < len(x) - 20]
    local = np.array([np.argmax(x[i - 20 : i + 20]) - 20 for i in index[1:]])
    assert np.median(np.abs(local)) <= 3


def test_records_without_atr_use_beats_csv_positions() -> None:
    lines = (MITDB / "105.beats.csv").read_text().splitlines()
    expected = np.array([int(v) for v in lines if v.strip() and not v.startswith("#")])
    replay = WfdbReplay(MITDB / "105", fs_hz=500.0)
    replay.read(replay.loop_samples)
    truth = replay.truth()
    np.testing.assert_allclose(truth.times_s, expected / 360.0)
    np.testing.assert_array_equal(truth.samples, np.round(expected / 360.0 * 500.0))
    assert set(truth.labels.tolist()) == {""}


def test_csv_replay_by_name_and_index_with_events(tmp_path: Path) -> None:
    path = tmp_path / "resp.csv"
    values = np.round(np.sin(np.arange(200) / 10.0) * 1000.0, 3)
    rows = "\n".join(f"{i},{v}" for i, v in enumerate(values))
    path.write_text(f"# exported by a test\nindex,band\n{rows}\n")
    events = tmp_path / "events.csv"
    events.write_text("# breaths\n15\n78\n141\n")
    by_name = CsvReplay(path, 50.0, "band", unit=Unit.RESP_AU, events_path=events)
    np.testing.assert_allclose(by_name.read(200), values)
    np.testing.assert_allclose(by_name.read(10), values[:10])  # looped
    np.testing.assert_allclose(by_name.truth().times_s, np.array([15, 78, 141]) / 50.0)
    by_index = CsvReplay(path, 50.0, 1, scale=0.5, target_fs_hz=25.0)
    assert by_index.fs_hz == 25.0
    assert by_index.loop_samples == 100
    assert by_index.unit is Unit.MICROVOLT
    assert len(by_index.truth().times_s) == 0
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(str(v) for v in values[:20]) + "\n")
    np.testing.assert_allclose(CsvReplay(plain, 10.0).read(20), values[:20])


def test_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ReplayError, match="unreadable"):
        WfdbReplay(tmp_path / "nope")
    with pytest.raises(ReplayError, match="bad_rate"):
        WfdbReplay(MITDB / "100", fs_hz=math.pi * 100)
    header = tmp_path / "h.csv"
    header.write_text("a,b\n1,2\n")
    with pytest.raises(ReplayError, match="no_such_column"):
        CsvReplay(header, 10.0, "c")
    with pytest.raises(SignalError, match="negative_read"):
        CsvReplay(header, 10.0, "a").read(-1)
    monkeypatch.setitem(sys.modules, "wfdb", None)
    with pytest.raises(ReplayError, match="wfdb_missing"):
        WfdbReplay(MITDB / "100")
