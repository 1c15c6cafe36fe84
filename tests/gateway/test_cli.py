"""The ``biogw`` commands against simulated garments on the virtual link (real bumble
stack, in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main

# Scans stop as soon as every simulated device has been heard; the timeout is an upper bound.
ENV = {"BIOGW_SIM__POLAR": "1", "BIOGW_SIM__GARMENT": "1", "BIOGW_BLE__SCAN_TIMEOUT_S": "20"}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_scan_lists_name_address_model_rssi(runner: CliRunner) -> None:
    result = runner.invoke(main, ["scan"], env=ENV)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    polar = next(line for line in lines if "E0:00:00:00:00:01" in line)
    garment = next(line for line in lines if "D0:00:00:00:00:01" in line)
    assert "Polar H10" in polar
    assert "polar-h10" in polar
    assert "-50" in polar
    assert "biogw garment" in garment
    assert "biogw-garment" in garment


def test_stream_prints_decoded_frames_of_one_device(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stream", "D0:00:00:00:00:01", "--duration", "1.5"], env=ENV)
    assert result.exit_code == 0, result.output
    kinds = {line.split()[0] for line in result.output.splitlines() if line.strip()}
    assert {"ecg", "resp", "accel"} <= kinds


def test_stream_of_an_absent_device_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stream", "D0:00:00:00:00:99"], env=ENV)
    assert result.exit_code == 1
    assert "no supported device D0:00:00:00:00:99" in result.output


def test_sim_streams_every_device_and_writes_truth(runner: CliRunner, tmp_path: Path) -> None:
    truth = tmp_path / "truth"
    result = runner.invoke(
        main,
        ["sim", "--polar", "1", "--garment", "2", "--duration", "3", "--truth-dir", str(truth)],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    rows = [line.split("│") for line in result.output.splitlines() if "streaming" in line]
    assert len(rows) == 3
    for row in rows:
        cells = [c.strip() for c in row]
        frames, errors, dropped = int(cells[4]), int(cells[6]), int(cells[7])
        assert frames > 10
        assert errors == dropped == 0
    ecg = json.loads((truth / "garment-D00000000001-ecg.json").read_text())
    assert len(ecg["fields"]["r_peak_times_s"]) >= 2


def test_invalid_command_line_values_are_configuration_errors(runner: CliRunner) -> None:
    result = runner.invoke(main, ["sim", "--polar", "-1", "--speed", "0"], env=ENV)
    assert result.exit_code == 2
    assert "sim.polar" in result.output
    assert "sim.speed" in result.output


def test_invalid_configuration_exits_2_with_every_problem(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[ble]\nlink = "smoke-signals"\n')
    result = runner.invoke(main, ["--config", str(config), "scan"], env=ENV)
    assert result.exit_code == 2
    assert "ble.link" in result.output


def test_sim_replays_a_wfdb_record_as_ecg(runner: CliRunner) -> None:
    from tests.shared_data import MITDB

    if not (MITDB / "100.hea").is_file():
        pytest.skip(f"MIT-BIH records not found in {MITDB}")
    result = runner.invoke(
        main,
        [
            "sim",
            "--polar",
            "1",
            "--garment",
            "1",
            "--duration",
            "2",
            "--replay-ecg",
            str(MITDB / "100"),
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("streaming") == 2


def test_sim_with_an_unreadable_record_is_a_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["sim", "--replay-ecg", str(tmp_path / "absent")], env=ENV)
    assert result.exit_code == 1
    assert "unreadable" in result.output
    assert "Traceback" not in result.output
